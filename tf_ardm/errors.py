"""User-facing errors.

Entry points catch `UserError` and print its message as one line, then exit
with a non-zero status, so a user mistake never ends in a deep TF traceback.
"""


class UserError(ValueError):
  """A problem with the user's input, flags or files; the message says which."""


def check(condition, message, *args):
  """Raises `UserError(message % args)` unless `condition` holds."""
  if not condition:
    raise UserError(message % args if args else message)
