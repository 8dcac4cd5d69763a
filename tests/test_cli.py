"""Command lines end to end: train, evaluate, sample, export, and bad input."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset=digits", "--channels=16", "--num_res_blocks=1", "--batch_size=32",
        "--train_steps=60", "--steps_per_epoch=30", "--learning_rate=2e-3",
        "--ema_decay=0.9", "--sample_budget=8", "--eval_batch_size=360"]


def run(module, *args, check=True, timeout=600):
  out = subprocess.run([sys.executable, "-m", f"tf_ardm.{module}", *args], cwd=REPO,
                       capture_output=True, text=True, timeout=timeout)
  if check:
    assert out.returncode == 0, out.stderr[-3000:]
  return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cli") / "run"
  run("train", *TINY, f"--workdir={workdir}")
  return workdir


@pytest.mark.parametrize("args,message", [
    (["--dataset=mnist"], "--dataset=mnist"),
    (["--dataset=text8", "--data_dir=/nonexistent"], "text8 not found"),
    (["--batch_size=abc"], "--batch_size=abc"),
    (["--batch_size=0"], "--batch_size=0"),
    (["--dropout=2"], "--dropout=2"),
    (["--flagfile=/nonexistent.cfg"], "/nonexistent.cfg does not exist"),
    (["--objective=absorbing"], "--objective=absorbing needs --diffusion_steps=T"),
    (["--objective=absorbing", "--diffusion_steps=0"], "--diffusion_steps=0"),
    (["--diffusion_steps=10"], "--diffusion_steps applies to --objective=absorbing only"),
])
def test_bad_input_gives_one_line_error(args, message):
  out = run("train", *args, check=False)
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr


def test_helpfull_documents_every_flag():
  out = run("train", "--helpfull", check=False)
  for flag in ("dataset", "data_dir", "seq_len", "channels", "num_res_blocks",
               "attention_every_block", "num_layers", "dim", "mlp_dim", "ce_weight",
               "workdir", "export_dir", "strategy", "batch_size", "train_steps",
               "learning_rate", "warmup_steps", "clip_norm", "ema_decay", "seed"):
    assert f"--{flag}" in out.stdout or f"--[no]{flag}" in out.stdout, flag


@pytest.mark.slow
def test_train_writes_model_export_and_tensorboard(trained):
  assert (trained / "model" / "config.json").is_file()
  assert (trained / "export" / "serving" / "1" / "saved_model.pb").is_file()
  assert (trained / "export" / "codec" / "saved_model.pb").is_file()
  events = [f for _, _, fs in os.walk(trained / "tensorboard") for f in fs]
  assert any(f.startswith("events") for f in events)
  # Re-running the same command resumes from the last checkpoint: nothing to do.
  out = run("train", *TINY, f"--workdir={trained}")
  assert "Epoch 1/2" not in out.stdout


@pytest.mark.slow
def test_evaluate_checkpoint_and_export_agree(trained):
  a = run("evaluate", f"--checkpoint={trained / 'model'}", "--passes=1").stdout
  b = run("evaluate", f"--model={trained / 'export'}", "--passes=1").stdout
  assert "ELBO (1 passes)" in a and "exact NLL" in a
  assert a.splitlines()[-1] == b.splitlines()[-1]  # The exact NLL is deterministic.


@pytest.mark.slow
def test_budget_table_and_plot(trained, tmp_path):
  plot = tmp_path / "budgets.png"
  out = run("evaluate", f"--model={trained / 'export'}", "--budgets=1,8,64",
            f"--plot={plot}", "--passes=1", "--exact_nll=false").stdout
  rows = [line.split() for line in out.splitlines() if line.strip()[:2] in ("1 ", "8 ", "64")]
  assert [r[0] for r in rows] == ["1", "8", "64"]
  assert Image.open(plot).size[0] > 100
  out = run("evaluate", f"--model={trained / 'export'}", "--budgets=0,65", check=False)
  assert out.returncode == 2 and "outside [1, D = 64]" in out.stderr


@pytest.mark.slow
def test_sample_and_infill(trained, tmp_path):
  png = tmp_path / "s.png"
  run("sample", f"--model={trained / 'export'}", "--budget=8", "--num=9", f"--out={png}")
  assert Image.open(png).size[0] > 8
  from tf_ardm.data import datasets  # pylint: disable=g-import-not-at-top
  x = datasets.load("digits").splits["test"][:4]
  np.save(tmp_path / "x.npy", x)
  out = run("sample", f"--model={trained / 'export'}", "--budget=4",
            f"--infill={tmp_path / 'x.npy'}", "--known=top_half", f"--out={tmp_path / 'i.png'}")
  assert "log2 p(x_unknown | x_known)" in out.stdout
  bad = np.zeros([4, 3], np.int32)
  np.save(tmp_path / "m.npy", bad)
  out = run("sample", f"--model={trained / 'export'}", f"--infill={tmp_path / 'x.npy'}",
            f"--known={tmp_path / 'm.npy'}", check=False)
  assert out.returncode == 2 and "--known mask has shape" in out.stderr
  out = run("sample", f"--model={trained / 'export'}", "--budget=65", check=False)
  assert out.returncode == 2 and "exceeds D = 64" in out.stderr


@pytest.mark.slow
def test_export_runs_without_tensorflow_compression(trained):
  """The servable loads and every signature runs with no TFC import."""
  script = textwrap.dedent(f"""
      import sys, numpy as np, tensorflow as tf
      m = tf.saved_model.load({str(trained / 'export' / 'serving' / '1')!r})
      assert "tensorflow_compression" not in sys.modules
      x = tf.zeros([2, 8, 8, 1], tf.int32)
      print(sorted(m.signatures))
      s = m.signatures
      bits = s["log_prob"](x=x, budget=tf.constant(8))["bits_per_dim"]
      assert bits.shape == (2,) and np.all(bits > 0)
      assert s["serving_default"](x=x, budget=tf.constant(64))["bits_per_dim"].shape == (2,)
      assert s["elbo"](x=x, policy=tf.range(64), seed=tf.constant(0))["elbo_bpd"].shape == (2,)
      assert s["step_loss"](x=x, t=tf.constant([0, 5]), seed=tf.constant(0))["loss_bpd"].shape == (2,)
      out = s["sample"](num=tf.constant(3), budget=tf.constant(8), seed=tf.constant(1))["samples"]
      assert out.shape == (3, 8, 8, 1) and out.dtype == tf.int32
      assert tf.reduce_min(out) >= 0 and tf.reduce_max(out) < 17
      known = tf.concat([tf.ones([2, 4, 8, 1], tf.int32), tf.zeros([2, 4, 8, 1], tf.int32)], 1)
      x = tf.random.uniform([2, 8, 8, 1], 0, 17, tf.int32)
      r = s["infill"](x=x, known=known, budget=tf.constant(4), seed=tf.constant(2))
      assert np.array_equal(r["samples"][:, :4].numpy(), x[:, :4].numpy())
      assert s["policy"](budget=tf.constant(4))["output_0"].shape == (4,)
      assert s["loss_components"]()["loss_components"].shape == (64,)
      try:
        s["log_prob"](x=x + 17, budget=tf.constant(8))
        raise SystemExit("out-of-range x accepted")
      except tf.errors.InvalidArgumentError as e:
        assert "K = 17" in str(e)
      print("OK")
  """)
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


@pytest.mark.slow
def test_saved_model_cli_lists_and_runs_log_prob(trained, tmp_path):
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  export = str(trained / "export" / "serving" / "1")
  out = subprocess.run([cli, "show", "--all", "--dir", export], capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  for name in ("serving_default", "log_prob", "sample", "infill", "elbo", "loss_components"):
    assert f"signature_def['{name}']" in out.stdout
  from tf_ardm.data import datasets  # pylint: disable=g-import-not-at-top
  np.save(tmp_path / "x.npy", datasets.load("digits").splits["test"][:3])
  np.save(tmp_path / "b.npy", np.int32(64))
  out = subprocess.run(
      [cli, "run", "--dir", export, "--tag_set", "serve", "--signature_def", "log_prob",
       "--inputs", f"x={tmp_path / 'x.npy'};budget={tmp_path / 'b.npy'}"],
      capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "bits_per_dim" in out.stdout


def test_missing_or_corrupt_model_gives_clear_error(tmp_path):
  out = run("evaluate", f"--model={tmp_path}", check=False)
  assert out.returncode == 2 and "not a SavedModel export" in out.stderr
  out = run("evaluate", f"--checkpoint={tmp_path}", check=False)
  assert out.returncode == 2 and "no trained model" in out.stderr
  (tmp_path / "config.json").write_text("{not json")
  out = run("evaluate", f"--checkpoint={tmp_path}", check=False)
  assert out.returncode == 2 and "corrupt" in out.stderr


def test_model_without_loss_components_gives_clear_error(tmp_path):
  from conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tf_ardm import checkpoints  # pylint: disable=g-import-not-at-top
  from tf_ardm.models.ardm import OAARDM  # pylint: disable=g-import-not-at-top
  checkpoints.save(OAARDM(tiny_config(shape=(8, 8, 1), num_classes=17)), str(tmp_path / "m"))
  out = run("sample", f"--checkpoint={tmp_path / 'm'}", "--budget=4",
            f"--out={tmp_path / 's.png'}", check=False)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: the model has no loss components, so only budget D = 64 is possible; "
      "train it longer or run tf_ardm.evaluate --loss_components"]
  assert not (tmp_path / "s.png").exists()


def test_evaluate_scores_any_network_as_absorbing_diffusion(tmp_path):
  import dataclasses  # pylint: disable=g-import-not-at-top
  from conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tf_ardm import checkpoints  # pylint: disable=g-import-not-at-top
  from tf_ardm import models  # pylint: disable=g-import-not-at-top
  config = dataclasses.replace(tiny_config(shape=(8, 8, 1), num_classes=17),
                               objective="absorbing", diffusion_steps=5)
  checkpoints.save(models.build(config), str(tmp_path / "m"))
  out = run("evaluate", f"--checkpoint={tmp_path / 'm'}", "--passes=1", "--limit=20",
            "--exact_nll=false", "--diffusion_steps=1000").stdout
  # Its own T and the requested one.
  assert "absorbing-diffusion ELBO, T = 5 (1 passes)" in out
  assert "absorbing-diffusion ELBO, T = 1000 (1 passes)" in out
  out = run("evaluate", f"--checkpoint={tmp_path / 'm'}", "--diffusion_steps=0", check=False)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: flag --diffusion_steps=['0']: --diffusion_steps must be integers >= 1"]
