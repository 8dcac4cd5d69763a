"""Command-line plumbing shared by the entry points.

`run(main)` is absl's app.run, except that a `UserError` (bad flags, a missing
or corrupt file, bad input) prints one line `error: ...` and exits with 2.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging  # pylint: disable=g-import-not-at-top,wrong-import-position

from tf_ardm.errors import UserError  # pylint: disable=g-import-not-at-top,wrong-import-position

__all__ = ["UserError", "run"]


def run(main):
  """Runs `main` under absl; user errors end in one line and exit code 2."""
  def guarded(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # TF's INFO chatter; -v 0 restores.
    try:
      return main(argv)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  for arg in sys.argv[1:]:
    if arg.startswith("--flagfile="):
      path = arg.split("=", 1)[1]
      if not os.path.isfile(path):
        print(f"error: --flagfile {path} does not exist", file=sys.stderr)
        sys.exit(2)
  app.run(guarded)
