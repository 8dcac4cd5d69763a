"""The codec portability harness (benchmarks/portability.py and its worker).

The quick matrix runs here on the shipped digits codec within the current
build: oneDNN on (1 thread) and off (2 threads), and the im2col convolutions
a GPU runs; its streams must be byte-identical and every pairing exact.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from tf_ardm.errors import UserError

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import portability  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import portability_worker as worker  # noqa: E402  pylint: disable=g-import-not-at-top

DIGITS = os.path.join(REPO, "savedmodels", "digits")
BATCHES = [1, 7]


def _result(hashes, exact=True, ref_exact=True, error=None):
  """A worker result with one sha256 per batch size of BATCHES."""
  return {"error": error, "identical_across_batches": len(set(hashes)) == 1,
          "own_exact": exact, "reference": {"exact": ref_exact},
          "batches": {str(b): {"sha256": h, "bytes": 10, "encode_s": 1.0, "decode_s": 0.5,
                               "exact": exact, "error": None}
                      for b, h in zip(BATCHES, hashes)}}


def _envs(n):
  return portability.environments(quick=True)[:n]


def test_full_matrix_is_the_cross_product():
  envs = portability.environments(["tf214", "tf217"], conv="direct")
  assert len(envs) == len(set(envs)) == 16
  assert {e.build for e in envs} == {"tf214", "tf217"} and {e.conv for e in envs} == {"direct"}
  # The GPU's convolution path, on this CPU: oneDNN on, XLA off/on, 2 threads per build.
  both = portability.environments(["tf214", "tf217"])
  assert both[:16] == envs and len(both) == 20
  assert {(e.build, e.xla) for e in both[16:]} == {(b, x) for b in ("tf214", "tf217")
                                                    for x in (False, True)}
  assert all(e.conv == "im2col" and e.onednn and e.threads == 2 for e in both[16:])
  assert all(e.variables({})["TF_ARDM_CONV"] == e.conv for e in both)
  assert portability.environments(["tf214", "tf217"], conv="im2col") == envs[:1] + both[16:]
  with pytest.raises(UserError, match="--conv=gpu"):
    portability.environments(["tf214"], conv="gpu")
  assert envs[0].python.endswith(os.path.join(".venv-tf214", "bin", "python"))
  for env in envs:
    variables = env.variables({"TF_XLA_FLAGS": "--inherited", "PATH": "/bin"})
    assert variables["PATH"] == "/bin"
    assert variables["TF_ENABLE_ONEDNN_OPTS"] == ("1" if env.onednn else "0")
    assert variables.get("TF_XLA_FLAGS") == (portability.XLA_FLAGS if env.xla else None)
    assert variables["TF_NUM_INTRAOP_THREADS"] == str(env.threads)
    argv = env.command(["--out=x"])
    assert argv[-2:] == [portability.WORKER, "--out=x"]
    if env.threads == 1:
      assert argv[:2] == ["taskset", "-c"] and "," not in argv[2]
  quick = portability.environments(["tf217"], quick=True)
  assert len(quick) == 3 and not any(e.xla for e in quick) and quick[-1].conv == "im2col"
  assert [(e.onednn, e.threads) for e in quick] == [(True, 1), (False, 2), (True, 2)]
  assert {e.python for e in quick} == {sys.executable}
  with pytest.raises(UserError, match="unknown build"):
    portability.environments(["tf299"])


def test_compare_verdicts():
  envs = _envs(3)
  same = portability.compare(envs, [_result(["a", "a"])] * 3, BATCHES)
  assert same["byte_identical"] and same["every_pairing_exact"]
  assert same["byte_identical_count"] == 3 and same["rows"][0]["env0_exact"] is None
  # Streams differ between environments, and env 2 cannot decode env 0's.
  other = portability.compare(envs, [_result(["a", "a"]), _result(["a", "a"]),
                                     _result(["b", "b"], ref_exact=False)], BATCHES)
  assert other["byte_identical_count"] == 2
  assert not other["byte_identical"] and not other["cross_decodes_exact"]
  assert not other["every_pairing_exact"] and other["own_round_trips_exact"]
  # Streams depend on the batch size within one environment.
  batch = portability.compare(envs[:1], [_result(["a", "c"])], BATCHES)
  assert not batch["rows"][0]["same_batches"] and not batch["every_pairing_exact"]
  # A crashed worker is a row with its error, not an exception.
  crashed = portability.compare(envs[:2], [_result(["a", "a"]),
                                           {"error": "worker killed by signal 6: abort"}],
                                BATCHES)
  assert not crashed["every_pairing_exact"] and not crashed["own_round_trips_exact"]
  text = portability.table(crashed)
  assert "killed by signal 6" in text and len(text.splitlines()) == 4
  assert portability.summary("digits", crashed) == (
      "digits: 1/2 environments byte-identical; every pairing decodes exactly: no")


def test_environment_mismatches_are_reported():
  env = _envs(1)[0]  # oneDNN on, 1 thread, XLA off.
  seen = {"onednn_enabled": False, "intra_op_threads": 2, "cpu_affinity": [0, 1],
          "variables": {"TF_XLA_FLAGS": portability.XLA_FLAGS}}
  assert len(portability.env_mismatches(env, {"env": seen})) == 4
  seen = {"onednn_enabled": True, "intra_op_threads": 1, "cpu_affinity": [0],
          "variables": {"TF_XLA_FLAGS": None}}
  assert not portability.env_mismatches(env, {"env": seen})


def test_run_worker_reports_a_failed_start(tmp_path):
  env = portability.Env("none", str(tmp_path / "missing" / "python"), True, False, 1)
  result = portability.run_worker(env, "codec", "x.npy", 4, BATCHES, str(tmp_path / "r.json"))
  assert result["error"].startswith("cannot start")
  env = portability.Env("false", "/bin/false", True, False, 1)
  result = portability.run_worker(env, "codec", "x.npy", 4, BATCHES, str(tmp_path / "r.json"))
  assert result["error"].startswith("worker exit status 1")


def test_ensure_env_runs_the_makefiles_install(monkeypatch):
  calls = []
  def fake_run(argv, **kwargs):
    calls.append(argv)
    return subprocess.CompletedProcess(argv, len(calls) - 1, "", "error: no python3.12\n")
  monkeypatch.setattr(portability.subprocess, "run", fake_run)
  assert portability.ensure_env("tf214", log=lambda _: None) == portability.build_python("tf214")
  assert calls[0][0] == "make" and calls[0][-2:] == ["install", "STACK=tf214"]
  with pytest.raises(UserError, match=r"^make install STACK=tf217 failed \(exit 1\): "
                     r"error: no python3.12$"):
    portability.ensure_env("tf217", log=lambda _: None)
  with pytest.raises(UserError, match="unknown build"):
    portability.ensure_env("tf999")


def test_streams_file_and_digest(tmp_path):
  streams = {1: [b"ab", b"", b"\x00\xff"], 7: [b"abc"]}
  path = str(tmp_path / "s.npz")
  worker.save_streams(path, streams)
  assert worker.load_streams(path) == streams
  # The digest sees stream boundaries, not only the concatenation.
  assert worker.digest([b"ab", b"c"]) != worker.digest([b"a", b"bc"])
  assert [(s.start, s.stop) for s in worker.slices(8, 7)] == [(0, 7), (7, 8)]


def test_worker_reports_foreign_streams_without_crashing(tmp_path):
  """In-process: the own round trip is exact, a corrupted reference is reported."""
  from tf_ardm.data import datasets  # pylint: disable=g-import-not-at-top
  x = datasets.load("digits").splits["test"][:2].astype(np.int32)
  codec = os.path.join(DIGITS, "codec")
  own = worker.run(codec, x, 2, [1, 2], streams_out=str(tmp_path / "own.npz"))
  assert own["error"] is None and own["own_exact"] and own["identical_across_batches"]
  assert own["batches"]["1"]["sha256"] == own["batches"]["2"]["sha256"]
  assert own["fingerprint"] == own["codec_info"]["fingerprint"] and len(own["fingerprint"]) == 8
  streams = worker.load_streams(str(tmp_path / "own.npz"))
  bad = {b: [s[:-1] + bytes([s[-1] ^ 1]) for s in v] for b, v in streams.items()}
  worker.save_streams(str(tmp_path / "bad.npz"), bad)
  result = worker.decode_reference(worker.tf.saved_model.load(codec), x, [1, 2],
                                   str(tmp_path / "bad.npz"))
  assert not result["exact"] and result["batches"]["1"]["decoded_ok"] == 0
  assert result["batches"]["2"]["error"].startswith("InvalidArgumentError: ")
  assert worker.run(str(tmp_path), x, 2, [1])["error"].startswith("cannot load")


@pytest.mark.slow
def test_quick_matrix_on_digits(tmp_path, monkeypatch, capsys):
  def no_install(*args, **kwargs):
    raise AssertionError("--quick must not install a stack")
  monkeypatch.setattr(portability, "ensure_env", no_install)
  out = str(tmp_path / "report.json")
  rc = portability.main(["--models=digits", "--count=8", "--budget=4", "--quick",
                         f"--out={out}"])
  printed = capsys.readouterr().out
  with open(out) as f:
    verdict = json.load(f)["models"]["digits"]
  assert verdict["environments"] == 3 and verdict["data_shape"] == [8, 8, 8, 1]
  assert verdict["own_round_trips_exact"]  # Every environment decodes its own streams.
  assert verdict["environments_as_requested"]
  for row, result in zip(verdict["rows"], verdict["results"]):
    assert row["bytes"] > 0 and row["error"] is None
    assert sorted(result["batches"], key=int) == ["1", "7"]
  assert rc == (0 if verdict["every_pairing_exact"] else 1)
  assert "digits: " in printed and "environments byte-identical" in printed
  assert len([line for line in printed.splitlines() if line.startswith("tf")]) == 3
  assert [r["conv"] for r in verdict["rows"]] == ["direct"] * 2 + ["im2col"]
  assert [r["direct_conv"] for r in verdict["results"]] == [True] * 2 + [False]
  assert verdict["every_pairing_exact"] and verdict["byte_identical"] and rc == 0
