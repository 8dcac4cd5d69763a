"""Runs many command lines of one tf_ardm command in forked processes.

A fresh `python -m tf_ardm.<command>` spends seconds importing TensorFlow;
the bad-input tables run dozens of command lines. `run_many` starts one
server process that imports TensorFlow and the library (never the command
module itself, and no TF op runs in it), then forks one child per command
line. Each child runs the command module as __main__, exactly as
`python -m` would, with its own argv, exit status, stdout and stderr.

  python tests/forked_cli.py COMMAND CASES.json RESULTS.json
"""
import importlib
import importlib.util
import json
import os
import pkgutil
import runpy
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_many(command, argvs, timeout=900):
  """[(returncode, stdout, stderr)] of `python -m tf_ardm.<command> *argv` per argv."""
  with tempfile.TemporaryDirectory() as tmp:
    cases, results = os.path.join(tmp, "cases.json"), os.path.join(tmp, "results.json")
    with open(cases, "w") as f:
      json.dump(argvs, f)
    subprocess.run([sys.executable, os.path.abspath(__file__), command, cases, results],
                   cwd=REPO, check=True, timeout=timeout)
    with open(results) as f:
      return [tuple(r) for r in json.load(f)]


def _preload():
  """Imports TensorFlow and every tf_ardm module that does not use absl flags
  (the commands and their flag modules define flags when a command runs)."""
  import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
  import tf_ardm  # pylint: disable=g-import-not-at-top
  for module in pkgutil.walk_packages(tf_ardm.__path__, "tf_ardm."):
    spec = importlib.util.find_spec(module.name)
    with open(spec.origin) as f:
      if "from absl import flags" not in f.read():
        importlib.import_module(module.name)


def _child(command, argv, out_path, err_path):
  """Runs in the forked child: the command as __main__; never returns."""
  code = 0
  with open(out_path, "w") as out, open(err_path, "w") as err:
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    sys.argv = [f"tf_ardm/{command}.py", *argv]
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


def _serve(command, cases_path, results_path):
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  sys.path.insert(0, REPO)
  _preload()
  with open(cases_path) as f:
    argvs = json.load(f)
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
    for argv in argvs:
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
