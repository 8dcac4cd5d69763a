"""Runs many tf_ardm command lines in forked processes.

A fresh `python -m tf_ardm.<command>` spends seconds importing TensorFlow;
the bad-input and --help tables run dozens of command lines. `run_many`
starts one server process that imports TensorFlow and the whole package,
the command layer tf_ardm.cli included (no TF op runs in it, and no flag is
parsed), then forks one child per command line. Each child runs its module
as __main__, exactly as `python -m` would, with its own argv, exit status,
stdout and stderr. The modules the children run are not imported by the
server, so that runpy finds them new, as `python -m` does.

  python tests/forked_cli.py CASES.json RESULTS.json
"""
import importlib
import json
import os
import pkgutil
import runpy
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_many(cases, timeout=900):
  """[(returncode, stdout, stderr)] per case (command, argv): the result of
  `python -m tf_ardm.<command> *argv` (command e.g. 'train' or 'cli.demo')."""
  with tempfile.TemporaryDirectory() as tmp:
    cases_path, results = os.path.join(tmp, "cases.json"), os.path.join(tmp, "results.json")
    with open(cases_path, "w") as f:
      json.dump([[command, list(argv)] for command, argv in cases], f)
    subprocess.run([sys.executable, os.path.abspath(__file__), cases_path, results],
                   cwd=REPO, check=True, timeout=timeout)
    with open(results) as f:
      return [tuple(r) for r in json.load(f)]


def _preload(skip):
  """Imports tf_ardm.cli (before TensorFlow, as the entry points do), then
  every module of the package except those named in `skip`."""
  import tf_ardm.cli  # pylint: disable=g-import-not-at-top,unused-import
  import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
  for module in pkgutil.walk_packages(tf_ardm.__path__, "tf_ardm."):
    if module.name not in skip:
      importlib.import_module(module.name)


def _child(command, argv, out_path, err_path):
  """Runs in the forked child: the command as __main__; never returns."""
  code = 0
  with open(out_path, "w") as out, open(err_path, "w") as err:
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    sys.argv = [os.path.join(REPO, "tf_ardm", *command.split(".")) + ".py", *argv]
    try:
      runpy.run_module(f"tf_ardm.{command}", run_name="__main__", alter_sys=True)
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # pylint: disable=broad-except
      import traceback  # pylint: disable=g-import-not-at-top
      traceback.print_exc()
      code = 1
    sys.stdout.flush()
    sys.stderr.flush()
  os._exit(code)  # pylint: disable=protected-access


def _serve(cases_path, results_path):
  sys.path.insert(0, REPO)
  with open(cases_path) as f:
    cases = json.load(f)
  _preload({f"tf_ardm.{command}" for command, _ in cases})
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
    for command, argv in cases:
      pid = os.fork()
      if pid == 0:
        _child(command, argv, out_path, err_path)
      _, status = os.waitpid(pid, 0)
      with open(out_path) as out, open(err_path) as err:
        results.append((os.waitstatus_to_exitcode(status), out.read(), err.read()))
  with open(results_path, "w") as f:
    json.dump(results, f)


if __name__ == "__main__":
  _serve(*sys.argv[1:])
