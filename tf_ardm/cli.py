"""Command-line plumbing shared by the entry points.

`run(main)` is absl's app.run, except that a `UserError` (bad flags, a missing
or corrupt file, bad input), a file-system error or a failed input assertion
inside a graph prints one line `error: ...` and exits with 2.
"""
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from tf_ardm.errors import UserError

__all__ = ["UserError", "run"]


def run(main, aliases=None):
  """Runs `main` under absl; user errors end in one line and exit code 2.

  aliases maps a command-line word to its replacement, e.g. {"-v": "--verbose"}
  (absl itself reads -v as --verbosity).
  """
  def guarded(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # TF's INFO chatter; -v 0 restores.
    try:
      return main(argv)
    except UserError as e:
      _fail(str(e))
    except tf.errors.InvalidArgumentError as e:
      # Our graphs validate their inputs with assertions; report the reason.
      _fail(assertion_message(e))
    except OSError as e:  # A file that can't be read or written.
      _fail(f"{e.filename}: {e.strerror}" if e.filename else str(e))
  aliases = aliases or {}
  app.run(guarded, flags_parser=lambda argv: _parse_flags([aliases.get(a, a) for a in argv]))


def _parse_flags(argv):
  """absl's flag parsing, with a one-line error for a bad flag or flagfile."""
  for arg in argv[1:]:
    if arg.startswith("--flagfile=") and not os.path.isfile(arg.split("=", 1)[1]):
      _fail(f"--flagfile {arg.split('=', 1)[1]} does not exist")
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).replace("\n", " "))


def assertion_message(error):
  """The message of the failed tf.debugging assertion in an InvalidArgumentError."""
  found = re.search(r"assertion failed: \[(.*?)\]", error.message, re.S)
  if found:
    return found.group(1)
  lines = [line.strip() for line in error.message.splitlines() if line.strip()]
  return lines[-1] if lines else "invalid argument"


def _fail(message):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)
