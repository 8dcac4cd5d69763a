"""Command lines end to end: train, evaluate, sample, export, and bad input."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import forked_cli

from conftest import REPO  # pylint: disable=g-bad-import-order
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


TRAIN_FLAG_ERRORS = [
    (["--dataset=mnist"], "--dataset=mnist"),
    (["--dataset=text8", "--data_dir=/nonexistent"], "text8 not found"),
    (["--batch_size=abc"], "--batch_size=abc"),
    (["--batch_size=0"], "--batch_size=0"),
    (["--dropout=2"], "--dropout=2"),
    (["--flagfile=/nonexistent.cfg"], "/nonexistent.cfg does not exist"),
    (["--dataset=photos", "--model_type=upscale", "--branching=3"],
     "branching factor 3 does not fit K = 256 classes"),
    (["--dataset=digits", "--model_type=upscale", "--branching=4"],
     "branching factor 4 does not fit K = 17 classes"),
    (["--dataset=photos", "--model_type=upscale", "--transition=text8"],
     "the text8 vowel/consonant transition only applies to text data"),
    (["--objective=absorbing"], "--objective=absorbing needs --diffusion_steps=T"),
    (["--dataset=photos", "--model_type=upscale", "--objective=absorbing",
      "--diffusion_steps=10"], "the absorbing objective needs an order-agnostic model"),
    (["--objective=absorbing", "--diffusion_steps=0"], "--diffusion_steps=0"),
    (["--diffusion_steps=10"], "--diffusion_steps applies to --objective=absorbing only"),
]


@pytest.fixture(scope="module")
def train_flag_errors():
  """(returncode, stdout, stderr) per TRAIN_FLAG_ERRORS case, from forked runs."""
  return forked_cli.run_many("train", [args for args, _ in TRAIN_FLAG_ERRORS])


@pytest.mark.parametrize("case", range(len(TRAIN_FLAG_ERRORS)),
                         ids=[m for _, m in TRAIN_FLAG_ERRORS])
def test_bad_input_gives_one_line_error(train_flag_errors, case):
  returncode, _, stderr = train_flag_errors[case]
  assert returncode == 2, stderr[-3000:]
  lines = stderr.strip().splitlines()
  message = TRAIN_FLAG_ERRORS[case][1]
  assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr


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
  from tf_ardm.models import checkpoints  # pylint: disable=g-import-not-at-top
  from tf_ardm.models.ardm import OAARDM  # pylint: disable=g-import-not-at-top
  checkpoints.save(OAARDM(tiny_config(shape=(8, 8, 1), num_classes=17)), str(tmp_path / "m"))
  out = run("sample", f"--checkpoint={tmp_path / 'm'}", "--budget=4",
            f"--out={tmp_path / 's.png'}", check=False)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: the model has no loss components, so only budget D = 64 is possible; "
      "train it longer or run tf_ardm.evaluate --loss_components"]
  assert not (tmp_path / "s.png").exists()


SHIPPED = os.path.join(REPO, "savedmodels", "digits")


def _bad_inputs(d):
  """Input files of every kind a user can get wrong, under directory d."""
  (d / "empty.png").write_bytes(b"")
  (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
  (d / "empty.npy").write_bytes(b"")
  (d / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
  np.save(d / "float.npy", np.zeros([2, 8, 8, 1], np.float32))
  np.save(d / "x.npy", np.zeros([2, 8, 8, 1], np.int32))
  (d / "empty.ardm").write_bytes(b"")
  (d / "corrupt.ardm").write_bytes(b"ARDM\x01" + bytes(range(40)))
  (d / "a_file").write_text("not a directory")
  (d / "corrupt.cfg").write_text("--batch_size=many\n")
  (d / "empty_dir").mkdir()
  (d / "corrupt_model").mkdir()
  (d / "corrupt_model" / "config.json").write_text('{"model": {"shape": ')


def _snapshot(d):
  return {str(p.relative_to(d)): p.read_bytes() if p.is_file() else None
          for p in sorted(d.rglob("*"))}


# (command, arguments with {d} for the input directory, part of the message).
BAD_INPUT = [
    ("train", ["--flagfile={d}/corrupt.cfg"], "--batch_size=many"),
    ("train", ["--checkpoint_every=0"], "--checkpoint_every=0"),
    ("train", ["--dataset=cifar10", "--data_dir={d}/empty.npy"], "cifar10"),
    ("train", ["--workdir={d}/a_file/run"], "Not a directory"),
    ("train", ["--export_dir={d}/a_file/export"], "Not a directory"),
    ("train", ["--strategy=tpu"], "no TPU found"),
    ("evaluate", ["--model={d}/a_file"], "not a SavedModel export"),
    ("evaluate", ["--checkpoint={d}/empty_dir"], "no trained model"),
    ("evaluate", [f"--model={SHIPPED}", "--passes=0"], "--passes=0"),
    ("evaluate", [f"--model={SHIPPED}", "--budgets=4", "--plot={d}/a_file/b.png"],
     "Not a directory"),
    ("sample", [f"--model={SHIPPED}", "--infill={d}/empty.npy", "--out={d}/s.png"],
     "not a valid .npy file"),
    ("sample", [f"--model={SHIPPED}", "--infill={d}/corrupt.npy", "--out={d}/s.png"],
     "not a valid .npy file"),
    ("sample", [f"--model={SHIPPED}", "--infill={d}/float.npy", "--out={d}/s.png"],
     "must be integers"),
    ("sample", [f"--model={SHIPPED}", "--infill={d}/missing.npy", "--out={d}/s.png"],
     "does not exist"),
    ("sample", [f"--model={SHIPPED}", "--out={d}/a_file/s.png"], "Not a directory"),
    ("sample", [f"--model={SHIPPED}", "--num=0", "--out={d}/s.png"], "--num=0"),
    ("compress", [f"--model={SHIPPED}", "{d}/missing.png", "{d}/out.ardm"], "does not exist"),
    ("compress", [f"--model={SHIPPED}", "{d}/empty.png", "{d}/out.ardm"], "not a readable PNG"),
    ("compress", [f"--model={SHIPPED}", "{d}/float.npy", "{d}/out.ardm"], "expected integers"),
    ("compress", [f"--model={SHIPPED}", "{d}/x.npy", "{d}/a_file/out.ardm"], "Not a directory"),
    ("compress", [f"--model={SHIPPED}", "--budget=65", "{d}/x.npy", "{d}/out.ardm"],
     "[1, D = 64]"),
    ("compress", ["--model={d}/empty_dir", "{d}/x.npy", "{d}/out.ardm"], "neither a codec"),
    ("decompress", [f"--model={SHIPPED}", "{d}/missing.ardm", "{d}/out.npy"], "does not exist"),
    ("decompress", [f"--model={SHIPPED}", "{d}/empty.ardm", "{d}/out.npy"], "truncated"),
    ("decompress", [f"--model={SHIPPED}", "{d}/corrupt.ardm", "{d}/out.npy"], "corrupt.ardm"),
    ("decompress", [f"--model={SHIPPED}", "{d}/x.npy", "{d}/out.npy"], "not an .ardm file"),
    ("decompress", [f"--model={SHIPPED}", "{d}/empty.ardm", "{d}/a_file/out.npy"],
     "Not a directory"),
    ("export", ["--checkpoint={d}/missing", "--export_dir={d}/export"], "no trained model"),
    ("export", ["--checkpoint={d}/corrupt_model", "--export_dir={d}/export"], "corrupt"),
    ("export", ["--checkpoint={d}/corrupt_model", "--export_dir={d}/a_file/export"],
     "Not a directory"),
    ("export", ["--checkpoint={d}/corrupt_model", "--export_dir={d}/export", "--version=0"],
     "--version=0"),
]


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
  """Per BAD_INPUT case: its directory of inputs, their snapshot before the
  run, and (returncode, stdout, stderr); one forked server per command."""
  root = tmp_path_factory.mktemp("bad_input")
  cases = []
  for i, (command, args, _) in enumerate(BAD_INPUT):
    d = root / str(i)
    d.mkdir()
    _bad_inputs(d)
    args = [a.format(d=d) for a in args]
    if command == "train":  # Never the default workdir in the repository.
      args = [f"--workdir={d}/run"] + args
    cases.append((command, args, d, _snapshot(d)))
  results = {}
  for command in dict.fromkeys(c for c, _, _, _ in cases):
    ids = [i for i, case in enumerate(cases) if case[0] == command]
    results.update(zip(ids, forked_cli.run_many(command, [cases[i][1] for i in ids])))
  return [(d, before, results[i]) for i, (_, _, d, before) in enumerate(cases)]


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(BAD_INPUT)),
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(BAD_INPUT)])
def test_bad_input_across_commands(bad_input_runs, case):
  """One line `error: ...`, exit status 2, nothing written, inputs untouched."""
  d, before, (returncode, _, stderr) = bad_input_runs[case]
  assert returncode == 2, stderr[-3000:]
  lines = stderr.strip().splitlines()
  message = BAD_INPUT[case][2]
  assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr
  assert _snapshot(d) == before


@pytest.mark.slow
def test_upscale_model_through_every_command(tmp_path):
  """Upscale-16 (2 stages) on photos: train, evaluate, sample, compress."""
  workdir = tmp_path / "up"
  run("train", "--dataset=photos", "--model_type=upscale", "--branching=16",
      "--channels=8", "--num_res_blocks=0", "--batch_size=8", "--train_steps=2",
      "--steps_per_epoch=2", "--sample_budget=2", "--eval_batch_size=416",
      f"--workdir={workdir}")
  assert '"model_type": "upscale"' in (workdir / "model" / "config.json").read_text()
  assert (workdir / "export" / "serving" / "1" / "saved_model.pb").is_file()
  assert (workdir / "export" / "codec" / "saved_model.pb").is_file()
  out = run("evaluate", f"--checkpoint={workdir / 'model'}", "--passes=1", "--limit=4",
            "--noexact_nll", "--budgets=1,768").stdout
  assert "2 stages" in out and "DP policy" in out
  png = tmp_path / "s.png"
  out = run("sample", f"--model={workdir / 'export'}", "--budget=2", "--num=4",
            f"--out={png}").stdout
  assert "4 network calls" in out and png.is_file()
  # The codec export codes the RGB sample grid in 16x16 patches, exactly.
  out = run("compress", f"--model={workdir / 'export'}", "--budget=3", "-v", str(png),
            str(tmp_path / "s.ardm")).stdout
  assert "bits/dim" in out and "network calls" in out
  run("decompress", f"--model={workdir / 'export'}", str(tmp_path / "s.ardm"),
      str(tmp_path / "back.png"))
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "back.png")),
                                np.asarray(Image.open(png)))


def test_evaluate_scores_any_network_as_absorbing_diffusion(tmp_path):
  import dataclasses  # pylint: disable=g-import-not-at-top
  from conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tf_ardm.models import checkpoints  # pylint: disable=g-import-not-at-top
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
