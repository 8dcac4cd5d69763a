"""Running a command: flag parsing, --help, and one-line errors.

`run(main, command)` is absl's app.run, except that
  * the command takes only its own flags (`tf_ardm.cli.flags.COMMANDS`):
    `--help` lists exactly those with the command's docstring, and any other
    flag of the package on its command line is an error (`--helpfull` still
    lists every flag, TF's and absl's too);
  * `-v` means `--verbose`, and `--checkpoint` is the former name of
    `--model`;
  * a `UserError` (bad flags, a missing or corrupt file, bad input), a
    file-system error or a failed input assertion inside a graph prints one
    line `error: ...` and exits with status 2.
"""
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from tf_ardm.cli import flags as flags_lib
from tf_ardm.errors import UserError

FLAGS = flags.FLAGS
_ALIASES = {"-v": "--verbose", "--checkpoint": "--model"}
_HELP = ("-h", "-?", "--help", "--helpshort")


def run(main, command):
  """Runs `main(argv)` as the command `command` (a key of flags_lib.COMMANDS)."""
  names = flags_lib.COMMANDS[command]
  module = sys.modules[main.__module__]
  for name in names:
    FLAGS.register_key_flag_for_module(module.__name__, FLAGS[name])

  def guarded(argv):
    logging.set_verbosity(logging.INFO if FLAGS.verbose else logging.WARNING)
    try:
      _check_flags_used(command, names)
      return main(argv)
    except UserError as e:
      fail(str(e))
    except tf.errors.InvalidArgumentError as e:
      # Our graphs validate their inputs with assertions; report the reason.
      fail(assertion_message(e))
    except OSError as e:  # A file that can't be read or written.
      fail(f"{e.filename}: {e.strerror}" if e.filename else str(e))

  def parse(argv):
    argv = [_alias(a) for a in argv]
    if any(a in _HELP for a in argv[1:]):
      print(_help(command, module))
      sys.exit(0)
    return _parse_flags(argv)

  app.run(guarded, flags_parser=parse)


def _alias(arg):
  name, eq, value = arg.partition("=")
  return _ALIASES[name] + eq + value if name in _ALIASES else arg


def _help(command, module):
  """The command's docstring and its own flags."""
  flag_help = FLAGS.module_help(module.__name__).split("\n", 1)[-1]
  return (f"{(module.__doc__ or '').strip()}\n\nflags of python -m tf_ardm.{command} "
          f"(--helpfull lists TensorFlow's and absl's too):\n{flag_help}")


def _check_flags_used(command, names):
  """UserError for a package flag given to a command that does not take it."""
  package = set().union(*flags_lib.COMMANDS.values())
  extra = sorted(n for n in package - set(names) if FLAGS[n].present)
  if extra:
    raise UserError(f"python -m tf_ardm.{command} does not take "
                    f"{', '.join('--' + n for n in extra)}; see --help")


def _parse_flags(argv):
  """absl's flag parsing, with a one-line error for a bad flag or flagfile."""
  for arg in argv[1:]:
    if arg.startswith("--flagfile=") and not os.path.isfile(arg.split("=", 1)[1]):
      fail(f"--flagfile {arg.split('=', 1)[1]} does not exist")
  try:
    return FLAGS(argv)
  except flags.Error as e:
    fail(str(e).replace("\n", " "))


def assertion_message(error):
  """The message of the failed tf.debugging assertion in an InvalidArgumentError."""
  found = re.search(r"assertion failed: \[(.*?)\]", error.message, re.S)
  if found:
    return found.group(1)
  lines = [line.strip() for line in error.message.splitlines() if line.strip()]
  return lines[-1] if lines else "invalid argument"


def fail(message):
  """Prints `error: message` on stderr and exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)
