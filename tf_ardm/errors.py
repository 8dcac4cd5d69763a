"""User-facing errors.

Entry points catch `UserError` and print its message as one line, then exit
with a non-zero status, so a user mistake never ends in a deep TF traceback.
"""
import os
import re
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


def from_tf_error(error, names=None):
  """The UserError of a TF error raised by a failed graph assertion.

  Its message is the assertion's data on one line: "reason: 3 7" for
  tf.debugging.Assert(ok, ["reason:", a, b]); a tf.debugging.assert_* op's
  comparison dump is dropped. With `names`, the tail "(stream i of the
  batch)" of `tf_ardm.coding.stream.assert_all` becomes " (names[i])", or
  nothing where names[i] is None. Any other error gives its first line of
  text without TF's traceback and node annotations.

  Args:
    error: a tf.errors.OpError (e.g. InvalidArgumentError); only its
      `message` is read.
    names: None, or a name (str or None) per stream of the failed batch.
  """
  text = getattr(error, "message", str(error))
  found = re.search(r"assertion failed: \[(.*)\]\s*$", text, re.M)
  if found:
    parts = found.group(1).split("] [")
    condition = [i for i, part in enumerate(parts) if part.startswith("Condition ")]
    message = " ".join(parts[:condition[0]] if condition else parts)
  else:
    lines = [re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line).strip()
             for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(
        ("Graph execution error", "Detected at node", "File ", "[[{{"))]
    message = lines[0] if lines else "invalid argument"
  if names is not None:
    message = re.sub(r" ?\(stream (\d+) of the batch\)",
                     lambda m: f" ({names[int(m.group(1))]})" if names[int(m.group(1))] else "",
                     message)
  return UserError(message)
