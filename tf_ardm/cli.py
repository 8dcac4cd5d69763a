"""Command-line plumbing shared by the entry points.

`run(main)` is absl's app.run, except that a `UserError` (bad flags, a missing
or corrupt file, bad input) prints one line `error: ...` and exits with 2.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging

from tf_ardm.errors import UserError

__all__ = ["UserError", "run"]


def run(main):
  """Runs `main` under absl; user errors end in one line and exit code 2."""
  def guarded(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # TF's INFO chatter; -v 0 restores.
    try:
      return main(argv)
    except UserError as e:
      _fail(str(e))
  app.run(guarded, flags_parser=_parse_flags)


def _parse_flags(argv):
  """absl's flag parsing, with a one-line error for a bad flag or flagfile."""
  for arg in argv[1:]:
    if arg.startswith("--flagfile=") and not os.path.isfile(arg.split("=", 1)[1]):
      _fail(f"--flagfile {arg.split('=', 1)[1]} does not exist")
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).replace("\n", " "))


def _fail(message):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)
