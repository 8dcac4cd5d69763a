"""Scale-out and fault tolerance: preemption, atomic writes, determinism, multi-worker."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from tf_ardm import atomic
from tf_ardm.cli import train as train_lib
from conftest import REPO  # pylint: disable=g-bad-import-order
EVERY = 3
# Epochs longer than the test runs: no validation or summaries, only steps.
TRAIN = ["--dataset=digits", "--channels=16", "--num_res_blocks=1", "--batch_size=16",
         "--train_steps=100000", "--steps_per_epoch=50000", "--jit_compile=false",
         f"--checkpoint_every={EVERY}"]


class _Train:
  """A `python -m tf_ardm.train` process whose stdout is read line by line."""

  def __init__(self, workdir):
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "tf_ardm.train", *TRAIN, f"--workdir={workdir}"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    self.lines = []

  def wait_for(self, pattern, timeout=300):
    """Reads stdout until a line matches `pattern`; returns the match."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      line = self.proc.stdout.readline()
      if not line:
        break
      self.lines.append(line)
      found = re.search(pattern, line)
      if found:
        return found
    self.proc.kill()
    raise AssertionError(f"no {pattern!r} in: {''.join(self.lines)[-2000:]}"
                         f"{self.proc.stderr.read()[-2000:]}")

  def end(self, sig):
    """Sends `sig`; returns (exit status, rest of stdout, stderr)."""
    self.proc.send_signal(sig)
    out, err = self.proc.communicate(timeout=300)
    self.lines.append(out)
    return self.proc.returncode, err

  def checkpoints(self):
    return [int(s) for s in re.findall(r"checkpoint at step (\d+)", "".join(self.lines))]

  def kill(self):
    if self.proc.poll() is None:
      self.proc.kill()
      self.proc.communicate()


@pytest.mark.slow
def test_sigterm_backs_up_and_sigkill_loses_at_most_checkpoint_every(tmp_path):
  workdir = tmp_path / "run"
  runs = []
  try:
    # SIGTERM: a backup at the running step, one line on stderr, status 143.
    runs.append(_Train(workdir))
    runs[-1].wait_for(rf"checkpoint at step {EVERY}\b")
    status, err = runs[-1].end(signal.SIGTERM)
    assert status == train_lib.PREEMPTED_EXIT_CODE, err[-3000:]
    stopped = int(re.search(r"stopped by SIGTERM at step (\d+)", err).group(1))
    assert stopped >= EVERY and runs[-1].checkpoints()[-1] == stopped
    assert [line for line in err.splitlines() if line.startswith("stopped:")] == [
        f"stopped: training stopped by SIGTERM at step {stopped}; its state is saved: "
        "re-run the same command to continue"]
    assert "Traceback" not in err
    # The same command continues at that step, then is killed with SIGKILL
    # after its second backup.
    runs.append(_Train(workdir))
    runs[-1].wait_for(rf"resumed at step {stopped}\b")
    runs[-1].wait_for(rf"checkpoint at step {stopped + 2 * EVERY}\b")
    status, _ = runs[-1].end(signal.SIGKILL)
    assert status == -signal.SIGKILL
    backups = runs[-1].checkpoints()
    # Backups every EVERY steps, so the kill lost fewer than EVERY steps...
    assert backups == list(range(stopped + EVERY, backups[-1] + 1, EVERY))
    # ...and the same command continues from the last one (or from one that
    # was written just before the kill, before its line was printed).
    runs.append(_Train(workdir))
    resumed = int(runs[-1].wait_for(r"resumed at step (\d+)").group(1))
    assert resumed in (backups[-1], backups[-1] + EVERY)
    status, _ = runs[-1].end(signal.SIGTERM)
    assert status == train_lib.PREEMPTED_EXIT_CODE
  finally:
    for run in runs:
      run.kill()
  # Nothing half-written: no final model or export of an unfinished run, and
  # the backup index names a complete checkpoint.
  assert sorted(os.listdir(workdir)) == ["backup", "tensorboard"]
  latest = tf.train.latest_checkpoint(str(workdir / "backup" / "chief"))
  assert latest and os.path.isfile(latest + ".index")


def test_atomic_directory_replaces_only_on_success(tmp_path):
  target = tmp_path / "out"
  target.mkdir()
  (target / "old").write_text("old")
  with pytest.raises(RuntimeError):
    with atomic.directory(str(target)) as tmp:
      with open(os.path.join(tmp, "new"), "w") as f:
        f.write("half")
      raise RuntimeError("killed mid-write")
  assert os.listdir(target) == ["old"] and os.listdir(tmp_path) == ["out"]
  with atomic.directory(str(target)) as tmp:
    with open(os.path.join(tmp, "new"), "w") as f:
      f.write("new")
  assert os.listdir(target) == ["new"] and os.listdir(tmp_path) == ["out"]


_WORKER = textwrap.dedent("""
    import json
    import sys
    import numpy as np
    sys.path.insert(0, "tests")
    from conftest import tiny_config
    from tf_ardm.data import datasets
    from tf_ardm.training import loop, strategies
    from tf_ardm.training.config import TrainConfig
    workdir, out, strategy, overrides = sys.argv[1:]
    train_config = TrainConfig(batch_size=16, steps_per_epoch=3, train_steps=3,
                               learning_rate=1e-3, ema_decay=0.9, sample_budget=4,
                               eval_batch_size=360, jit_compile=False,
                               **json.loads(overrides))
    strategy = strategies.build(strategy)
    model = loop.train(datasets.load("digits"), tiny_config(shape=(8, 8, 1), num_classes=17),
                       train_config, workdir, strategy)
    weights = model.network.weights + model.ema_network.weights
    np.savez(out, *[w.numpy() for w in weights], tracker=model.loss_tracker.ema.numpy(),
             count=model.loss_tracker.count.numpy())
    print("replicas", strategy.num_replicas_in_sync)
""")


def _train(tmp_path, name, strategy, **overrides):
  """Trains 3 steps of batch 16 in a fresh process; returns its npz.

  overrides: more TrainConfig fields.
  """
  env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
  out = subprocess.run(
      [sys.executable, "-c", _WORKER, str(tmp_path / name), str(tmp_path / f"{name}.npz"),
       strategy, json.dumps(overrides)],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return np.load(tmp_path / f"{name}.npz")


@pytest.mark.slow
def test_deterministic_runs_give_bitwise_identical_weights(tmp_path):
  a, b = (_train(tmp_path, name, "one_device", deterministic=True, seed=7)
          for name in ("a", "b"))
  assert len(a.files) > 10 and a["count"].sum() == 3 * 16  # 3 steps of 16.
  for name in a.files:
    np.testing.assert_array_equal(a[name], b[name])


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.mark.slow
def test_two_workers_on_localhost_equal_one_process_over_the_global_batch(tmp_path):
  """MultiWorkerMirroredStrategy over loopback: 2 workers x batch 8 == 1 x 16."""
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  procs = []
  try:
    for i in range(2):
      env = dict(os.environ, TF_CONFIG=json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": i}}))
      procs.append(subprocess.Popen(
          [sys.executable, "-c", _WORKER, str(tmp_path / "multi"),
           str(tmp_path / f"worker{i}.npz"), "multi_worker", "{}"],
          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    one = _train(tmp_path, "single", "one_device")
    for proc in procs:
      out, err = proc.communicate(timeout=600)
      assert "replicas 2" in out, err[-3000:]
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
  w0, w1 = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
  assert len(w0.files) > 10
  for name in w0.files:  # The workers agree bit for bit.
    np.testing.assert_array_equal(w0[name], w1[name])
  # The same orders, times and data as one process: equal step losses and
  # counts; weights equal up to float rounding (which Adam's normalisation
  # scales to a fraction of the learning rate, 1e-3, for near-zero gradients).
  np.testing.assert_array_equal(w0["count"], one["count"])
  np.testing.assert_allclose(w0["tracker"], one["tracker"], rtol=1e-5)
  for name in w0.files:
    np.testing.assert_allclose(w0[name], one[name], rtol=1e-4, atol=2e-4)
