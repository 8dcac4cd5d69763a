"""User-facing errors.

Entry points catch `UserError` and print its message as one line, then exit
with a non-zero status, so a user mistake never ends in a deep TF traceback.
"""
import os
import tempfile


class UserError(ValueError):
  """A problem with the user's input, flags or files; the message says which."""


def check(condition, message, *args):
  """Raises `UserError(message % args)` unless `condition` holds."""
  if not condition:
    raise UserError(message % args if args else message)


def check_writable(path, what):
  """Raises UserError unless `path` can be created: the nearest existing
  directory above it accepts a new file (tried, then removed).

  Commands call it before long work; `what` names the path in the message.
  """
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  try:
    fd, probe = tempfile.mkstemp(prefix=".tmp-", dir=parent)
    os.close(fd)
    os.unlink(probe)
  except OSError as e:
    raise UserError(f"cannot write {what} {path}: {parent}: {e.strerror}") from None
