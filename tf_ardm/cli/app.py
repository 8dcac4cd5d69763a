"""Running a command: flag parsing, --help, and one-line errors.

`run(main, command)` is absl's app.run, except that
  * the command takes only its own flags (`tf_ardm.cli.flags.COMMANDS`):
    `--help` lists exactly those with the command's docstring, and any other
    flag of the package on its command line is an error (`--helpfull` still
    lists every flag, TF's and absl's too; both exit with status 0);
  * `-v` means `--verbose`, and `--checkpoint` is the former name of
    `--model`;
  * a `UserError` (bad flags, a missing or corrupt file, bad input), a
    file-system error or a failed input assertion inside a graph prints one
    line `error: ...` and exits with status 2.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from tf_ardm.cli import flags as flags_lib
from tf_ardm import errors
from tf_ardm.errors import UserError

FLAGS = flags.FLAGS
_ALIASES = {"-v": "--verbose", "--checkpoint": "--model"}
_HELP = ("-h", "-?", "--help", "--helpshort")


def configure_codec_process():
  """Process settings of the codec commands (compress, decompress).

  Deterministic kernels (GPU ones too), and no grappler graph rewrites: the
  codec's graphs are exact integer arithmetic, so rewriting them gains no
  speed, while it took about 5 s of each command's first call (one digit,
  2-core CPU).
  """
  tf.config.experimental.enable_op_determinism()
  tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


def run(main, command):
  """Runs `main(argv)` as the command `command` (a key of flags_lib.COMMANDS)."""
  names = flags_lib.COMMANDS[command]
  module = sys.modules[main.__module__]
  # absl files the key flags of a __main__ module under the script's path.
  key = sys.argv[0] if module.__name__ == "__main__" else module.__name__
  for name in names:
    FLAGS.register_key_flag_for_module(key, FLAGS[name])
  program = _program(command)

  def guarded(argv):
    logging.set_verbosity(logging.INFO if FLAGS.verbose else logging.WARNING)
    try:
      _check_flags_used(program, names)
      return main(argv)
    except UserError as e:
      fail(str(e))
    except tf.errors.InvalidArgumentError as e:
      # Our graphs validate their inputs with assertions; report the reason.
      fail(str(errors.from_tf_error(e)))
    except OSError as e:  # A file that can't be read or written.
      fail(f"{e.filename}: {e.strerror}" if e.filename else str(e))

  def parse(argv):
    argv = [_alias(a) for a in argv]
    if any(a in _HELP for a in argv[1:]):
      print(_help(program, module, key))
      sys.exit(0)
    if "--helpfull" in argv[1:]:
      print(f"{_doc(module)}\n\nevery flag, TensorFlow's and absl's too:\n"
            f"{FLAGS.get_help()}")
      sys.exit(0)
    return _parse_flags(argv)

  app.run(guarded, flags_parser=parse)


def _alias(arg):
  name, eq, value = arg.partition("=")
  return _ALIASES[name] + eq + value if name in _ALIASES else arg


def _program(command):
  """How the command was started: `python -m tf_ardm.<command>` (or tf_ardm.cli.demo)."""
  spec = getattr(sys.modules["__main__"], "__spec__", None)
  name = getattr(spec, "name", "")
  return f"python -m {name if name.startswith('tf_ardm.') else 'tf_ardm.' + command}"


def _help(program, module, key):
  """The command's docstring and its own flags (the key flags of `key`)."""
  flag_help = FLAGS.module_help(key).strip().split("\n", 1)[-1]  # Less "<module>:".
  return (f"{_doc(module)}\n\nflags of {program} "
          f"(--helpfull lists TensorFlow's and absl's too):\n{flag_help}")


def _doc(module):
  return (module.__doc__ or "").strip()


def _check_flags_used(program, names):
  """UserError for a package flag given to a command that does not take it."""
  package = set().union(*flags_lib.COMMANDS.values())
  extra = sorted(n for n in package - set(names) if FLAGS[n].present)
  if extra:
    raise UserError(f"{program} does not take "
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


def fail(message):
  """Prints `error: message` on stderr and exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)
