"""Atomic writes of files and directories: nothing half-written is left in place.

A file or directory is written under a hidden temporary name next to its
target and renamed into place only when complete. A kill at any moment leaves either
the old directory or the new one (plus, at worst, a hidden `.tmp-*` leftover).
"""
import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def directory(path):
  """Yields a temporary directory that replaces `path` when the block succeeds.

  On an exception the temporary directory is removed and `path` is untouched.
  """
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
  try:
    yield tmp
    old = None
    if os.path.isdir(path):
      old = tempfile.mkdtemp(prefix=".old-", dir=parent)
      os.replace(path, os.path.join(old, "dir"))
    elif os.path.exists(path):
      os.unlink(path)
    os.replace(tmp, path)
    if old:
      shutil.rmtree(old, ignore_errors=True)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def file(path):
  """Yields a temporary file path (same suffix) that replaces `path` on success.

  On an exception the temporary file is removed and `path` is untouched.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1],
                             dir=directory)
  os.close(fd)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600, widened as open() would.
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
