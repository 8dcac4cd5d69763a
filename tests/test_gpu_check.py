"""benchmarks/gpu_check.py without a GPU: its arguments, and its verdicts and
tables on made-up worker results (the workers themselves run in its --smoke
mode, not here)."""
import math
import os
import subprocess
import sys
import types

import pytest
import tensorflow as tf

from conftest import REPO
from tf_ardm.errors import UserError

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import gpu_check  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

BATCHES = (1, 7)


def _flag_values(**given):
  """Stand-ins of the parsed flags: defaults, with `given` as given on the command line."""
  values = {f.name: types.SimpleNamespace(value=gpu_check.FLAGS[f.name].default,
                                          present=False)
            for f in gpu_check.dataclasses.fields(gpu_check.Options)}
  for name, value in given.items():
    values[name] = types.SimpleNamespace(value=value, present=True)
  return values


def test_options_apply_smoke_defaults_unless_given():
  opts = gpu_check.options_from_flags(_flag_values(out="/tmp/x"))
  assert (opts.smoke, opts.cifar_steps, opts.check_steps) == (False, 20, 600)
  assert opts.parts == gpu_check.PARTS and opts.codec_batches == ("1", "7")
  smoke = gpu_check.options_from_flags(_flag_values(out="/tmp/x", smoke=True, check_steps=50))
  assert smoke.cifar_steps == gpu_check.SMOKE["cifar_steps"]
  assert smoke.codec_models == ("digits",) and smoke.check_steps == 50


def test_check_options():
  opts = gpu_check.Options(out="/tmp/x")
  assert gpu_check.check_options(opts).codec_batches == BATCHES
  bad = [({"out": ""}, "--out"), ({"parts": ("train", "gpu")}, "--parts"),
         ({"parts": ()}, "--parts"), ({"cifar_precisions": ("float64",)}, "float64"),
         ({"check_steps": 2, "check_epochs": 3}, "--check_epochs"),
         ({"codec_batches": ("1", "x")}, "--codec_batches"),
         ({"codec_batches": ("0",)}, "--codec_batches"),
         ({"codec_models": ("nope",)}, "no codec export"), ({"max_minutes": 0}, "--max_minutes")]
  for change, message in bad:
    with pytest.raises(UserError, match=message):
      gpu_check.check_options(gpu_check.dataclasses.replace(opts, **change))
  # A model is only looked up when the codec part runs.
  gpu_check.check_options(gpu_check.Options(out="/tmp/x", parts=("train",),
                                            codec_models=("nope",)))


def test_split_cpus():
  assert gpu_check.split_cpus(range(16), 4) == (tuple(range(4)), tuple(range(4, 16)))
  assert gpu_check.split_cpus({1, 0}, 4) == ((0, 1), (0, 1))
  assert gpu_check.split_cpus(range(8), 8) == (tuple(range(8)),) * 2


def test_relative_difference():
  assert gpu_check.relative_difference(2.0, 2.1) == pytest.approx(0.1 / 2.1)
  assert gpu_check.relative_difference(0.0, 0.0) == 0.0
  assert gpu_check.relative_difference(1.0, math.nan) == math.inf


def _train(losses, val, first=4.25, devices=("/device:CPU:0",)):
  epochs = [{"epoch": i + 1, "loss": l, "val_bpd": v, "seconds": 10.0 * (i + 1)}
            for i, (l, v) in enumerate(zip(losses, val))]
  return {"devices": list(devices), "steps": 300, "first": {"loss": first},
          "epochs": epochs, "wall_s": 40.0}


GPU = ("/device:CPU:0", "/device:GPU:0")


def test_train_verdict():
  cpu = _train([3.0, 2.5, 2.3], [2.6, 2.4, 2.30])
  args = (0.01, 0.05, 0.05, True)
  verdict = gpu_check.train_verdict(cpu, _train([3.02, 2.48, 2.31], [2.61, 2.41, 2.33],
                                                first=4.2501, devices=GPU), *args)
  assert verdict["ok"] is True and verdict["final_val_bpd"]["diff"] == pytest.approx(0.03)
  assert verdict["epochs"][0]["loss_rdiff"] == pytest.approx(0.02 / 3.02)
  fails = [_train([3.0, 2.5, 2.3], [2.6, 2.4, 2.40], devices=GPU),   # validation 0.1 off
           _train([3.0, 2.5, 2.6], [2.6, 2.4, 2.30], devices=GPU),   # an epoch's loss 13%
           _train([3.0, 2.5, 2.3], [2.6, 2.4, 2.30], first=4.5, devices=GPU),
           _train([3.0, 2.5, 2.3], [2.6, 2.4, 2.30]),                # the GPU run saw none
           _train([3.0, 2.5], [2.6, 2.4], devices=GPU)]              # stopped early
  for gpu in fails:
    assert gpu_check.train_verdict(cpu, gpu, *args)["ok"] is False
  assert gpu_check.train_verdict(cpu, _train([3.0, 2.5, 2.3], [2.6, 2.4, 2.3]),
                                 0.01, 0.05, 0.05, False)["ok"] is True  # Smoke: no GPU.
  for gpu in (None, {"error": "worker exit status 1: boom"}, {"skipped": "out of time"}):
    verdict = gpu_check.train_verdict(cpu, gpu, *args)
    assert verdict["ok"] is None and verdict["error"].startswith("gpu run")
  text = gpu_check.train_table(gpu_check.train_verdict(cpu, fails[0], *args), cpu, fails[0],
                               gpu_check.Options(out="/tmp/x"), "GPU")
  assert text.split("epoch 3 valid bpd")[1].split("\n")[0].split() == ["2.3000", "2.4000",
                                                                     "0.1000"]


def _envs():
  def env(name, gpu, conv, xla):
    return gpu_check.CodecEnv(build="tf214", python=sys.executable, onednn=True, xla=False,
                              threads=2, conv=conv, name=name, gpu=gpu, codec_xla=xla)
  return (env("cpu", False, "direct", False), env("gpu", True, "im2col", False),
          env("gpu_xla", True, "im2col", True), env("cpu_reverse", False, "direct", False))


def _worker(sha, gpu, direct, own=True, ref=True):
  devices = ["/physical_device:CPU:0"] + (["/physical_device:GPU:0"] if gpu else [])
  return {"env": {"devices": devices}, "direct_conv": direct, "error": None,
          "identical_across_batches": True, "own_exact": own,
          "reference": None if ref is None else {"exact": ref, "batches": {}},
          "batches": {str(b): {"sha256": sha, "bytes": 99, "encode_s": 1.0, "decode_s": 0.5,
                               "exact": own, "error": None} for b in BATCHES}}


def test_codec_verdict():
  cpu_env, gpu_env, xla_env, rev_env = _envs()
  def verdict(cpu=None, gpu=None, xla=None, rev=None, expect_gpu=True):
    sides = [(cpu_env, cpu or _worker("a", False, True, ref=None)),
             (gpu_env, gpu or _worker("a", True, False)),
             (xla_env, xla or _worker("a", True, False))]
    return gpu_check.codec_verdict(sides, (rev_env, rev or _worker("a", False, True)),
                                   BATCHES, expect_gpu)
  good = verdict()
  assert good["ok"] is True and good["byte_identical"] and good["cpu_decodes_gpu_exact"]
  assert [r["name"] for r in good["rows"]] == ["cpu", "gpu", "gpu_xla", "cpu_reverse"]
  assert [r["device_gpu"] for r in good["rows"]] == [False, True, True, False]
  assert verdict(gpu=_worker("b", True, False))["byte_identical"] is False
  assert verdict(gpu=_worker("b", True, False))["ok"] is False
  assert verdict(xla=_worker("a", True, False, ref=False))["gpu_decodes_cpu_exact"] is False
  assert verdict(rev=_worker("a", False, True, ref=False))["ok"] is False
  assert verdict(rev=_worker("b", False, True))["byte_identical"] is False
  assert verdict(gpu=_worker("a", True, False, own=False))["own_round_trips_exact"] is False
  assert verdict(gpu=_worker("a", False, False))["devices_ok"] is False  # No GPU seen.
  mismatch = verdict(gpu=_worker("a", True, True))  # direct convolutions, asked im2col.
  assert mismatch["environments_as_requested"] is False and mismatch["ok"] is False
  # Smoke: the GPU side is the CPU.
  smoke = verdict(gpu=_worker("a", False, False), xla=_worker("a", False, False),
                  expect_gpu=False)
  assert smoke["ok"] is True
  # Workers that did not run drop out; without the CPU side there is no verdict.
  sides = [(cpu_env, _worker("a", False, True, ref=None)), (gpu_env, _worker("a", True, False)),
           (xla_env, {"skipped": "out of time"})]
  partial = gpu_check.codec_verdict(sides, (rev_env, None), BATCHES, True)
  assert partial["ok"] is True and partial["sides_missing"] == ["gpu_xla"]
  assert partial["cpu_decodes_gpu_exact"] is None
  sides[0] = (cpu_env, {"skipped": "out of time"})
  assert gpu_check.codec_verdict(sides, None, BATCHES, True)["ok"] is None
  alone = gpu_check.codec_verdict([(cpu_env, {"error": "worker timed out after 9 s: x"}),
                                   (gpu_env, {"skipped": "out of time"})], None, BATCHES, True)
  assert alone["ok"] is None and alone["error"] == (
      "no comparison: only cpu ran; cpu: worker timed out after 9 s: x")
  failed = [(cpu_env, _worker("a", False, True, ref=None)),
            (gpu_env, {"error": "worker exit status 1: CUDA error", "wall_s": 3.0})]
  assert gpu_check.codec_verdict(failed, None, BATCHES, True)["ok"] is False
  text = gpu_check.codec_table("digits", verdict(rev=_worker("a", False, True, ref=False)),
                               gpu_check.check_options(gpu_check.Options(out="/tmp/x")))
  assert "cpu_reverse" in text and "NO" in text


def test_throughput_summary_and_exit_status():
  result = {"peaks": {"float32": 4e14, "bfloat16": 8e14}, "flops_per_step": 6e13,
            "matmul_n": 8192, "batch": 128, "network": {"channels": 256, "num_res_blocks": 32},
            "rows": [{"precision": "float32", "batch": 128, "seconds_per_step": 0.3,
                      "compile_s": 80.0, "loss": 5.5, "peak_gpu_bytes": 40 * 2**30},
                     {"precision": "bfloat16", "batch": 128, "seconds_per_step": 0.15,
                      "compile_s": 70.0, "loss": 5.6}]}
  summary = gpu_check.throughput_summary(result, ("float32", "bfloat16"))
  f32, bf16 = summary["rows"]
  assert summary["ok"] is True and f32["ms_per_step"] == pytest.approx(300.0)
  assert f32["examples_per_s"] == pytest.approx(128 / 0.3)
  assert f32["flops_per_s"] == pytest.approx(2e14) and f32["vs_own_matmul"] == 0.5
  assert bf16["vs_bfloat16_matmul"] == pytest.approx(0.5)
  assert bf16["vs_float32_matmul"] == pytest.approx(1.0) and f32["peak_gpu_gib"] == 40
  assert "bfloat16" in gpu_check.throughput_table(summary, result)
  partial = dict(result, rows=result["rows"][:1], error="worker timed out after 300 s")
  assert gpu_check.throughput_summary(partial, ("float32", "bfloat16"))["ok"] is None
  oom = dict(result, rows=[result["rows"][0], {"precision": "bfloat16",
                                                "error": "ResourceExhaustedError: OOM"}])
  failed = gpu_check.throughput_summary(oom, ("float32", "bfloat16"))
  assert failed["ok"] is None and failed["missing"] == ["bfloat16"]
  assert failed["error"] == "bfloat16: ResourceExhaustedError: OOM"
  assert "OOM" in gpu_check.throughput_table(failed, oom)
  nan = dict(result, rows=[dict(result["rows"][0], loss=math.nan)])
  assert gpu_check.throughput_summary(nan, ("float32",))["ok"] is False
  assert gpu_check.exit_status({"train": True, "codec digits": None}) == 0
  assert gpu_check.exit_status({"train": True, "codec digits": False}) == 1


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="a GPU is visible")
def test_without_a_gpu_it_needs_smoke(tmp_path):
  done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "gpu_check.py"),
                         f"--out={tmp_path}"], capture_output=True, text=True, check=False,
                        timeout=120)
  assert done.returncode == 2 and "needs a GPU" in done.stderr.strip().splitlines()[-1]
  assert not os.listdir(tmp_path)


def test_gpu_lock_excludes_other_holders(tmp_path):
  path = str(tmp_path / "gpu.lock")
  with gpu_check.gpu_lock(path):
    with open(path) as other:
      with pytest.raises(BlockingIOError):
        gpu_check.fcntl.flock(other, gpu_check.fcntl.LOCK_EX | gpu_check.fcntl.LOCK_NB)
  with open(path) as other:  # Released.
    gpu_check.fcntl.flock(other, gpu_check.fcntl.LOCK_EX | gpu_check.fcntl.LOCK_NB)
  with gpu_check.gpu_lock(None):  # No lock file: nothing to hold.
    pass


def test_last_line_skips_tensorflow_logging(tmp_path):
  # pylint: disable=protected-access
  log = tmp_path / "log.txt"
  log.write_text("Epoch 1/2\nValueError: boom\n"
                 "2026-12-03 16:30:17.671206: E tensorflow/compiler/xla/cuda_blas.cc:1] x\n"
                 "W1203 16:25:44.082547 140624221023104 loop.py:117] trained\n\n")
  assert gpu_check._last_line(str(log)) == "ValueError: boom"
  log.write_text("W1203 16:25:44.082547 1 loop.py:117] only logging\n")
  assert gpu_check._last_line(str(log)).endswith("only logging")
  assert gpu_check._last_line(str(tmp_path / "none")) == "(no log)"
