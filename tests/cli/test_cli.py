"""Command lines end to end: train, evaluate, sample, export, compress, --help and bad input."""
import dataclasses
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import forked_cli

from conftest import REPO  # pylint: disable=g-bad-import-order
from conftest import tiny_config  # pylint: disable=g-bad-import-order
from tf_ardm.cli import flags as flags_lib

FLAGS = flags_lib.FLAGS
# The module each command runs as: python -m tf_ardm.<module>.
MODULES = {c: "cli.demo" if c == "demo" else c for c in flags_lib.COMMANDS}
TINY = ["--dataset=digits", "--channels=16", "--num_res_blocks=1", "--batch_size=32",
        "--train_steps=60", "--steps_per_epoch=30", "--learning_rate=2e-3",
        "--ema_decay=0.9", "--sample_budget=8", "--eval_batch_size=360"]


def run(module, *args, check=True, timeout=600, cwd=REPO):
  out = subprocess.run([sys.executable, "-m", f"tf_ardm.{module}", *args], cwd=cwd,
                       capture_output=True, text=True, timeout=timeout)
  if check:
    assert out.returncode == 0, out.stderr[-3000:]
  return out


def one_line_error(result, message):
  """Whether (returncode, stdout, stderr) is exit status 2 with one line
  `error: ...` that contains `message`."""
  returncode, _, stderr = result
  lines = stderr.strip().splitlines()
  return (returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ")
          and message in lines[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A workdir trained by the command line, and that command's output."""
  workdir = tmp_path_factory.mktemp("cli") / "run"
  return workdir, run("train", *TINY, f"--workdir={workdir}")


# (command line, part of the one-line error message).
FLAG_ERRORS = [
    ("train --dataset=mnist", "--dataset=mnist"),
    ("train --dataset=text8 --data_dir=/nonexistent", "text8 not found"),
    ("train --batch_size=abc", "--batch_size=abc"),
    ("train --batch_size=0", "--batch_size=0"),
    ("train --dropout=2", "--dropout=2"),
    ("train --flagfile=/nonexistent.cfg", "/nonexistent.cfg does not exist"),
    ("train --dataset=photos --model_type=upscale --branching=3",
     "branching factor 3 does not fit K = 256 classes"),
    ("train --dataset=digits --model_type=upscale --branching=4",
     "branching factor 4 does not fit K = 17 classes"),
    ("train --dataset=photos --model_type=upscale --transition=text8",
     "the text8 vowel/consonant transition only applies to text data"),
    ("train --objective=absorbing", "--objective=absorbing needs --diffusion_steps=T"),
    ("train --objective=absorbing --diffusion_steps=10,20",
     "--objective=absorbing needs --diffusion_steps=T (one value)"),
    ("train --dataset=photos --model_type=upscale --objective=absorbing --diffusion_steps=10",
     "the absorbing objective needs an order-agnostic model"),
    ("train --objective=absorbing --diffusion_steps=0",
     "flag --diffusion_steps=['0']: --diffusion_steps must be integers >= 1"),
    ("train --diffusion_steps=10", "--diffusion_steps applies to --objective=absorbing only"),
    # A flag of another command, or a former name, is refused.
    ("train --model=runs/digits/model", "python -m tf_ardm.train does not take --model"),
    ("evaluate --batch_size=10", "python -m tf_ardm.evaluate does not take --batch_size"),
    ("compress --dataset=text --num=3",
     "python -m tf_ardm.compress does not take --dataset, --num; see --help"),
    ("sample --workdir=x", "python -m tf_ardm.sample does not take --workdir"),
    ("cli.demo --model=x", "python -m tf_ardm.cli.demo does not take --model"),
    ("export --max_batch=0", "--max_batch=0"),
    # The codec has no micro-batches any more: the former flag is unknown.
    ("export --micro_batch=16", "micro_batch"),
]
# Each command's --help, then train's --helpfull.
HELP = [(MODULES[c], ["--help"]) for c in flags_lib.COMMANDS] + [("train", ["--helpfull"])]


@pytest.fixture(scope="module")
def quick_runs():
  """(returncode, stdout, stderr) per FLAG_ERRORS case, then per HELP case,
  from forked runs of one server."""
  return forked_cli.run_many([(line.split()[0], line.split()[1:]) for line, _ in FLAG_ERRORS]
                             + HELP)


@pytest.mark.parametrize("case", range(len(FLAG_ERRORS)), ids=[m for _, m in FLAG_ERRORS])
def test_bad_flags_give_one_line_error(quick_runs, case):
  assert one_line_error(quick_runs[case], FLAG_ERRORS[case][1]), quick_runs[case][2]


# Flags each command's --help must list (besides all of flags_lib.COMMANDS).
EXPECTED_FLAGS = {
    "train": ["dataset", "channels", "learning_rate", "workdir", "diffusion_steps",
              "eval_batch_size", "verbose"],
    "evaluate": ["model", "eval_batch_size", "passes", "budgets", "diffusion_steps",
                 "loss_components", "verbose"],
    "sample": ["model", "budget", "num", "out", "infill", "known", "verbose"],
    "compress": ["model", "budget", "normalize", "overwrite", "verbose"],
    "decompress": ["model", "overwrite", "verbose"],
    "export": ["model", "export_dir", "version", "max_batch", "data_dir", "verbose"],
    "demo": ["workdir", "passes", "verbose"],
}
# Flags of TF and absl: only --helpfull lists them.
FOREIGN_FLAGS = ["--[no]logtostderr", "--[no]only_check_args", "--verbosity", "--xla_",
                 "--[no]hbm_oom_exit", "--delta_threshold", "--[no]pdb"]


def _listed(name, text):
  return f"  --{name}:" in text or f"  --[no]{name}:" in text


@pytest.mark.parametrize("command", list(flags_lib.COMMANDS))
def test_help_lists_exactly_the_commands_own_flags(quick_runs, command):
  returncode, stdout, stderr = quick_runs[len(FLAG_ERRORS) + list(MODULES).index(command)]
  assert returncode == 0, stderr[-3000:]
  module = importlib.import_module(f"tf_ardm.cli.{command}")
  assert stdout.startswith(module.__doc__.strip().splitlines()[0])
  assert f"flags of python -m tf_ardm.{MODULES[command]} " in stdout
  own = flags_lib.COMMANDS[command]
  assert set(EXPECTED_FLAGS[command]) <= set(own)
  for name in own:
    assert _listed(name, stdout), name
  for name in set().union(*flags_lib.COMMANDS.values()) - set(own):
    assert not _listed(name, stdout), name
  for flag in FOREIGN_FLAGS:
    assert flag not in stdout, flag


def test_helpfull_documents_every_flag(quick_runs):
  returncode, stdout, stderr = quick_runs[-1]
  assert returncode == 0, stderr[-3000:]
  for flag in ("dataset", "data_dir", "seq_len", "channels", "num_res_blocks",
               "attention_every_block", "num_layers", "dim", "mlp_dim", "ce_weight",
               "workdir", "export_dir", "strategy", "batch_size", "train_steps",
               "learning_rate", "warmup_steps", "clip_norm", "ema_decay", "seed",
               "model", "budget", "overwrite", "logtostderr", "only_check_args"):
    assert f"--{flag}" in stdout or f"--[no]{flag}" in stdout, flag


def test_commands_import_together_with_one_set_of_flags():
  """Every command module imports in one process; the flags each takes exist
  once, every flag belongs to a command, and the docstrings name only them."""
  package = set()
  for command, names in flags_lib.COMMANDS.items():
    module = importlib.import_module(f"tf_ardm.cli.{command}")
    assert callable(module.main), command
    assert len(set(names)) == len(names), command
    for name in names:
      assert name in FLAGS, (command, name)
    mentioned = set(re.findall(r"--(?:\[no\])?([a-z_]+)", module.__doc__)) - {"flagfile"}
    assert mentioned <= set().union(*flags_lib.COMMANDS.values()), (command, mentioned)
    if command != "demo":  # python -m tf_ardm.<command> runs tf_ardm.cli.<command>.
      entry = importlib.import_module(f"tf_ardm.{command}")
      assert getattr(entry, command) is module and callable(module.run)
    package |= set(names)
  defined = {f.name for f in FLAGS.flags_by_module_dict()[flags_lib.__name__]}
  assert package == defined
  for command in ("evaluate", "sample", "compress", "decompress", "export"):
    assert "model" in flags_lib.COMMANDS[command]
  assert "verbose" in set.intersection(*map(set, flags_lib.COMMANDS.values()))
  assert "batch_size" not in flags_lib.COMMANDS["evaluate"]


def test_package_import_changes_no_process_wide_logging():
  """Importing the library sets no TF_CPP_MIN_LOG_LEVEL and keeps absl's
  verbosity; importing the command layer (before TF) quiets TF. Its one
  process-wide setting is TF_USE_LEGACY_KERAS=1 (tf.keras is Keras 2 on TF
  2.17 too), set only where unset."""
  library = [m for m in _package_modules() if not m.startswith("tf_ardm.cli")
             and m.split(".")[1] not in flags_lib.COMMANDS]
  script = textwrap.dedent(f"""
      import importlib, logging as py_logging, os, sys
      from absl import logging
      before = logging.get_verbosity(), py_logging.getLogger().level
      import tf_ardm
      assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
      for name in {library!r}:
        importlib.import_module(name)
      assert "tensorflow" in sys.modules and "tf_ardm.cli" not in sys.modules
      assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ, os.environ["TF_CPP_MIN_LOG_LEVEL"]
      import tensorflow as tf
      assert not hasattr(tf.keras, "ops"), "tf.keras is Keras 3"
      assert (logging.get_verbosity(), py_logging.getLogger().level) == before
      print("OK")
  """)
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS")}
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
  script = ("import os, sys, tf_ardm.cli; assert 'tensorflow' not in sys.modules; "
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
  out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr[-3000:]
  for command in set(flags_lib.COMMANDS) - {"demo"}:  # The entry points import it first.
    with open(os.path.join(REPO, "tf_ardm", f"{command}.py")) as f:
      imports = [line for line in f if line.startswith(("import ", "from "))]
    assert imports[0] == f"from tf_ardm.cli import {command}\n", command


def _package_modules():
  import pkgutil  # pylint: disable=g-import-not-at-top
  import tf_ardm  # pylint: disable=g-import-not-at-top
  return [m.name for m in pkgutil.walk_packages(tf_ardm.__path__, "tf_ardm.")]


def test_demo_paths_match_the_readme():
  """make demo runs tf_ardm.cli.demo, which trains into runs/digits: the
  README's table of example commands uses that workdir, and its demo text
  names what the demo writes there."""
  from tf_ardm.cli import demo  # pylint: disable=g-import-not-at-top
  with open(os.path.join(REPO, "Makefile")) as f:
    assert re.search(r"^demo:.*\n\t\$\(PY\) -m tf_ardm\.cli\.demo\n", f.read(), re.M)
  workdir = FLAGS["workdir"].default
  assert workdir == "runs/digits"
  with open(os.path.join(REPO, "README.md")) as f:
    readme = f.read()
  examples = [line for line in readme.splitlines() if line.startswith("| `python -m tf_ardm.")]
  assert set(re.findall(r"\bruns/\w+", "\n".join(examples))) == {workdir}
  paths = demo.paths(workdir)
  assert paths["export"] == os.path.join(workdir, "export")
  for name in ("model", "export", "samples"):
    assert f"`{paths[name]}`" in readme or f"={paths[name]}" in readme, name


@pytest.mark.slow
def test_train_writes_model_export_and_tensorboard(trained):
  trained, first = trained
  assert (trained / "model" / "config.json").is_file()
  assert (trained / "export" / "serving" / "1" / "saved_model.pb").is_file()
  assert (trained / "export" / "codec" / "saved_model.pb").is_file()
  events = [f for _, _, fs in os.walk(trained / "tensorboard") for f in fs]
  assert any(f.startswith("events") for f in events)
  assert "model: " in first.stdout and "(60 steps)" in first.stdout
  assert "Training unet on digits" not in first.stderr  # INFO only with -v.
  # Re-running the same command resumes from the last backup: nothing to do.
  out = run("train", *TINY, f"--workdir={trained}", "-v")
  assert "resumed at step 60" in out.stdout
  assert "Epoch 1/2" not in out.stdout
  assert "Training unet on digits, 1 replica(s)" in out.stderr


@pytest.mark.slow
def test_evaluate_model_dir_and_export_agree(trained):
  trained, _ = trained
  a = run("evaluate", f"--checkpoint={trained / 'model'}", "--passes=1").stdout
  b = run("evaluate", f"--model={trained / 'export'}", "--passes=1",
          "--eval_batch_size=100").stdout
  assert "negative ELBO (1 passes)" in a and "exact NLL" in a
  assert a.splitlines()[-1] == b.splitlines()[-1]  # The exact NLL is deterministic.


@pytest.mark.slow
def test_budget_table_and_plot(trained, tmp_path):
  trained, _ = trained
  plot = tmp_path / "budgets.png"
  out = run("evaluate", f"--model={trained / 'export'}", "--budgets=1,8,64",
            f"--plot={plot}", "--passes=1", "--exact_nll=false", "-v").stdout
  rows = [line.split() for line in out.splitlines() if line.strip()[:2] in ("1 ", "8 ", "64")]
  assert [r[0] for r in rows] == ["1", "8", "64"]
  assert Image.open(plot).size[0] > 100
  # -v: the DP policy of each budget.
  assert "budget 1: DP policy [0]" in out
  policy = re.search(r"budget 8: DP policy (\[.*\])", out)
  assert policy and len(json.loads(policy.group(1))) == 8
  assert "budget 64: DP policy [0, 1, 2," in out
  out = run("evaluate", f"--model={trained / 'export'}", "--budgets=0,65", check=False)
  assert out.returncode == 2 and "outside [1, D = 64]" in out.stderr


@pytest.mark.slow
def test_sample_and_infill(trained, tmp_path):
  trained, _ = trained
  png = tmp_path / "s.png"
  out = run("sample", f"--model={trained / 'export'}", "--budget=8", "--num=9",
            f"--out={png}", "-v").stdout
  assert Image.open(png).size[0] > 8
  # -v: the policy and the time taken.
  assert re.search(r"policy .*: \[0, \d+, \d+, \d+, \d+, \d+, \d+, \d+\]; \d+\.\d+ s", out)
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


def test_sample_of_a_text_model_writes_text(tmp_path):
  from tf_ardm import models  # pylint: disable=g-import-not-at-top
  from tf_ardm.models import checkpoints  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / "m")
  checkpoints.save(models.build(tiny_config("text", shape=(8, 1), num_classes=28)), model_dir)
  out = run("sample", f"--model={model_dir}", "--num=3", cwd=tmp_path)
  lines = (tmp_path / "samples.txt").read_text().splitlines()
  assert "wrote 3 samples (8 network calls) to samples.txt" in out.stdout
  assert len(lines) == 3 and all(len(line) == 8 for line in lines)
  assert set("".join(lines)) <= set("? abcdefghijklmnopqrstuvwxyz")  # Never the mask '_'.
  out = run("sample", f"--model={model_dir}", f"--out={tmp_path / 'x.png'}", check=False)
  assert one_line_error((out.returncode, out.stdout, out.stderr),
                        "a text model's samples are text"), out.stderr
  assert not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_loss_components_are_stored_and_exported(trained, tmp_path):
  """evaluate --loss_components stores the estimate with the model; the
  Servable of the model directory and a re-export use it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tf_ardm.generation import policies  # pylint: disable=g-import-not-at-top
  from tf_ardm.models import checkpoints  # pylint: disable=g-import-not-at-top
  from tf_ardm.serving import servable  # pylint: disable=g-import-not-at-top
  trained, _ = trained
  model_dir = tmp_path / "model"
  shutil.copytree(trained / "model", model_dir)
  out = run("evaluate", f"--model={model_dir}", "--loss_components", "--samples_per_step=2",
            "--passes=1", "--limit=16", "--exact_nll=false", "--budgets=8", "-v").stdout
  assert "held-out loss components (2 samples/step" in out and str(model_dir) in out
  heldout = np.load(model_dir / checkpoints.HELDOUT)
  assert heldout.shape == (64,) and heldout.dtype == np.float32
  assert np.all(np.isfinite(heldout)) and np.all(heldout >= 0) and heldout.sum() > 0
  expected = policies.optimal_stage_policies(heldout, 1, [8])[0][0][0].tolist()
  assert f"budget 8: DP policy {expected}" in out  # The table used them at once.
  scorer, _ = servable.load(str(model_dir))
  np.testing.assert_array_equal(
      scorer.loss_components()["heldout_loss_components"].numpy(), heldout)
  export = tmp_path / "export"
  out = run("export", f"--model={model_dir}", f"--export_dir={export}", "-v").stdout
  assert re.search(r"exported in \d+\.\d s", out)
  loaded = tf.saved_model.load(str(export / "serving" / "1"))
  np.testing.assert_array_equal(
      loaded.loss_components()["heldout_loss_components"].numpy(), heldout)
  assert loaded.policy(budget=tf.constant(8)).numpy().tolist() == expected


@pytest.mark.slow
def test_export_runs_without_tensorflow_compression(trained):
  """The servable loads and every signature runs with no TFC import (neither
  tensorflow_compression nor tensorflow_compression_ops)."""
  trained, _ = trained
  script = textwrap.dedent(f"""
      import sys, numpy as np, tensorflow as tf
      m = tf.saved_model.load({str(trained / 'export' / 'serving' / '1')!r})
      assert not [m for m in sys.modules if m.startswith("tensorflow_compression")]
      x = tf.zeros([2, 8, 8, 1], tf.int32)
      print(sorted(m.signatures))
      s = m.signatures
      bits = s["log_prob"](x=x, budget=tf.constant(8))["bits_per_dim"]
      assert bits.shape == (2,) and np.all(bits > 0)
      assert s["serving_default"](x=x, budget=tf.constant(64))["bits_per_dim"].shape == (2,)
      assert s["elbo"](x=x, policy=tf.range(64), seed=tf.constant(0))["elbo_bpd"].shape == (2,)
      loss = s["step_loss"](x=x, t=tf.constant([0, 5]), seed=tf.constant(0))["loss_bpd"]
      assert loss.shape == (2,)
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
  trained, _ = trained
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
  assert "nor a trained model directory" in out.stderr
  (tmp_path / "config.json").write_text("{not json")
  out = run("evaluate", f"--checkpoint={tmp_path}", check=False)
  assert out.returncode == 2 and "corrupt" in out.stderr


def test_model_without_loss_components_gives_clear_error(tmp_path):
  from tf_ardm.models import checkpoints  # pylint: disable=g-import-not-at-top
  from tf_ardm.models.ardm import OAARDM  # pylint: disable=g-import-not-at-top
  checkpoints.save(OAARDM(tiny_config(shape=(8, 8, 1), num_classes=17)), str(tmp_path / "m"))
  out = run("sample", f"--model={tmp_path / 'm'}", "--budget=4",
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
    ("evaluate", ["--checkpoint={d}/empty_dir"], "nor a trained model directory"),
    ("evaluate", ["--model={d}/corrupt_model"], "corrupt"),
    ("evaluate", [f"--model={SHIPPED}", "--passes=0"], "--passes=0"),
    ("evaluate", [f"--model={SHIPPED}", "--budgets=4", "--plot={d}/a_file/b.png"],
     "Not a directory"),
    ("evaluate", [f"--model={SHIPPED}", "--loss_components"],
     "--loss_components stores its estimate with the model: give --model=<workdir>/model"),
    ("sample", [f"--model={SHIPPED}", "--infill={d}/empty.npy", "--out={d}/s.png"],
     "not a valid .npy file"),
    ("sample", [f"--model={SHIPPED}", "--infill={d}/corrupt.npy", "--out={d}/s.png"],
     "not a valid .npy file"),
    ("sample", [f"--model={SHIPPED}", "--infill={d}/float.npy", "--out={d}/s.png"],
     "--infill: expected integers"),
    ("sample", [f"--model={SHIPPED}", "--infill={d}/missing.npy", "--out={d}/s.png"],
     "does not exist"),
    ("sample", [f"--model={SHIPPED}", "--out={d}/a_file/s.png"], "Not a directory"),
    ("sample", [f"--model={SHIPPED}", "--num=0", "--out={d}/s.png"], "--num=0"),
    ("sample", ["--out={d}/s.png"], "give --model"),
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
    # --model may be a model directory or an export.
    ("export", ["--model={d}/missing", "--export_dir={d}/export"],
     "is not a SavedModel export (no saved_model.pb) nor a trained model directory"),
    ("export", ["--model={d}/corrupt_model", "--export_dir={d}/export", "--max_batch=0"],
     "--max_batch=0"),
    ("export", ["--checkpoint={d}/corrupt_model", "--export_dir={d}/export"], "corrupt"),
    ("export", ["--model={d}/corrupt_model", "--export_dir={d}/a_file/export"],
     "Not a directory"),
    ("export", ["--model={d}/corrupt_model", "--export_dir={d}/export", "--version=0"],
     "--version=0"),
]


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
  """Per BAD_INPUT case: its directory of inputs, their snapshot before the
  run, and (returncode, stdout, stderr); all from one forked server."""
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
  results = forked_cli.run_many([(command, args) for command, args, _, _ in cases])
  return [(d, before, result) for (_, _, d, before), result in zip(cases, results)]


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(BAD_INPUT)),
                         ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(BAD_INPUT)])
def test_bad_input_across_commands(bad_input_runs, case):
  """One line `error: ...`, exit status 2, nothing written, inputs untouched."""
  d, before, result = bad_input_runs[case]
  assert one_line_error(result, BAD_INPUT[case][2]), result[2][-3000:]
  assert _snapshot(d) == before


def _tiny_digits_models(root, seeds=(0, 1)):
  """Untrained 8x8 digits model directories root/m<seed>, with made-up loss
  components (every budget allowed)."""
  from tf_ardm import models  # pylint: disable=g-import-not-at-top
  from tf_ardm import seeding  # pylint: disable=g-import-not-at-top
  from tf_ardm.models import checkpoints  # pylint: disable=g-import-not-at-top
  paths = []
  for seed in seeds:
    seeding.set_random_seed(seed)
    model = models.build(tiny_config(shape=(8, 8, 1), num_classes=17))
    model.heldout_loss_components = np.linspace(2.0, 0.1, 64, dtype=np.float32) / 64
    paths.append(root / f"m{seed}")
    checkpoints.save(model, str(paths[-1]))
  return paths


@pytest.mark.slow
def test_ardm_files_are_version_2_lean_and_bound_to_their_model(tmp_path):
  """compress writes container version 2: the model's arithmetic and
  fingerprint once, then lean streams, those of the Python API. The model
  decodes it exactly; another model, or a version-1 file, gives a one-line
  error and writes nothing."""
  from tf_ardm.coding import coder as coder_lib  # pylint: disable=g-import-not-at-top
  from tf_ardm.coding import container  # pylint: disable=g-import-not-at-top
  from tf_ardm.coding import stream  # pylint: disable=g-import-not-at-top
  from tf_ardm.data import datasets  # pylint: disable=g-import-not-at-top
  ours, other = _tiny_digits_models(tmp_path)
  digit = datasets.load("digits").splits["test"][:1]
  Image.fromarray(digit[0, ..., 0].astype(np.uint8), "L").save(tmp_path / "d.png")
  v1 = os.path.join(REPO, "tests", "fixtures", "v1", "digit0.png.ardm")
  with open(v1, "rb") as f:
    v1_bytes = f.read()
  packed = tmp_path / "d.png.ardm"
  results = forked_cli.run_many([
      ("compress", [f"--model={ours}", "--budget=4", str(tmp_path / "d.png"), str(packed)]),
      ("decompress", [f"--model={ours}", "-v", str(packed), str(tmp_path / "back.png")]),
      ("decompress", [f"--model={other}", str(packed), str(tmp_path / "wrong.png")]),
      ("decompress", [f"--model={ours}", v1, str(tmp_path / "v1.png")])])
  assert results[0][0] == 0, results[0][2][-3000:]
  assert results[1][0] == 0, results[1][2][-3000:]
  assert "bits/dim" in results[1][1]
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "back.png")),
                                np.asarray(Image.open(tmp_path / "d.png")))

  data = packed.read_bytes()
  assert data[:5] == container.MAGIC + bytes([2])
  original, fingerprint, streams = container.unpack(data, str(packed))
  coder = coder_lib.load(str(ours))
  assert fingerprint == coder.fingerprint != coder_lib.load(str(other)).fingerprint
  assert container.pack(original, streams, fingerprint, stream.ARITHMETIC) == data
  assert len(streams) == 1 and not streams[0].startswith(stream.MAGIC)
  assert stream.read_header(streams[0], None, lean=True) == (4, 1, 6)
  assert streams == coder.compress_each(digit, 4, lean=True)

  assert one_line_error(results[2], f"{packed}: {stream.FOREIGN}"), results[2][2]
  assert "model fingerprint mismatch" in results[2][2]
  assert one_line_error(results[3], f"{v1}: a version-1 .ardm file"), results[3][2]
  assert stream.FORMAT_1_READER in results[3][2]
  assert not (tmp_path / "wrong.png").exists() and not (tmp_path / "v1.png").exists()
  with open(v1, "rb") as f:
    assert f.read() == v1_bytes


@pytest.mark.slow
def test_export_takes_max_batch_and_re_exports_an_export(tmp_path):
  """export --max_batch bounds the codec's network calls only; --model may
  be an export, whose model is exported again into the same integer model."""
  from tf_ardm.coding import codec  # pylint: disable=g-import-not-at-top
  from tf_ardm.coding import coder as coder_lib  # pylint: disable=g-import-not-at-top
  model_dir, = _tiny_digits_models(tmp_path, seeds=(0,))
  first, second = tmp_path / "export", tmp_path / "again"
  results = forked_cli.run_many([
      ("export", [f"--model={model_dir}", f"--export_dir={first}", "--max_batch=8", "-v"]),
      ("export", [f"--model={first}", f"--export_dir={second}", "--version=2"])])
  for returncode, stdout, stderr in results:
    assert returncode == 0, stderr[-3000:]
    assert "codec export: " in stdout
  assert re.search(r"exported in \d+\.\d s", results[0][1])
  assert (first / "serving" / "1" / "saved_model.pb").is_file()
  assert (second / "serving" / "2" / "saved_model.pb").is_file()
  exported, again = coder_lib.load(str(first)), coder_lib.load(str(second))
  in_memory = coder_lib.load(str(model_dir))
  assert exported.max_batch == 8
  assert again.max_batch == in_memory.max_batch == codec.default_max_batch(64)
  assert exported.fingerprint == again.fingerprint == in_memory.fingerprint


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
  out = run("evaluate", f"--model={workdir / 'model'}", "--passes=1", "--limit=4",
            "--noexact_nll", "--budgets=1,768", "-v").stdout
  assert "2 stages" in out and "budget 1: DP policy [[0], [0]]" in out
  png = tmp_path / "s.png"
  out = run("sample", f"--model={workdir / 'export'}", "--budget=2", "--num=4",
            f"--out={png}").stdout
  assert "4 network calls" in out and png.is_file()
  # The codec export codes the RGB sample grid in 16x16 patches, exactly.
  out = run("compress", f"--model={workdir / 'export'}", "--budget=3", "-v", str(png),
            str(tmp_path / "s.ardm")).stdout
  assert "bits/dim" in out and "network calls" in out
  out = run("decompress", f"--model={workdir / 'export'}", "-v", str(tmp_path / "s.ardm"),
            str(tmp_path / "back.png")).stdout
  assert "bits/dim" in out and "total: 1 file(s)" in out
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "back.png")),
                                np.asarray(Image.open(png)))


def test_evaluate_scores_any_network_as_absorbing_diffusion(tmp_path):
  import dataclasses  # pylint: disable=g-import-not-at-top
  from tf_ardm import models  # pylint: disable=g-import-not-at-top
  from tf_ardm.models import checkpoints  # pylint: disable=g-import-not-at-top
  config = dataclasses.replace(tiny_config(shape=(8, 8, 1), num_classes=17),
                               objective="absorbing", diffusion_steps=5)
  checkpoints.save(models.build(config), str(tmp_path / "m"))
  out = run("evaluate", f"--model={tmp_path / 'm'}", "--passes=1", "--limit=20",
            "--exact_nll=false", "--diffusion_steps=1000").stdout
  # Its own T and the requested one.
  assert "absorbing-diffusion negative ELBO, T = 5 (1 passes)" in out
  assert "absorbing-diffusion negative ELBO, T = 1000 (1 passes)" in out
  out = run("evaluate", f"--model={tmp_path / 'm'}", "--diffusion_steps=0", check=False)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: flag --diffusion_steps=['0']: --diffusion_steps must be integers >= 1"]


@pytest.mark.slow
def test_a_byte_model_round_trips_any_file(tmp_path):
  """A byte model (K = 257: bytes and PAD) compresses any file exactly through the command
  line: empty, 1 byte, every byte value, invalid UTF-8, a PNG (coded as
  bytes, not as an image), text and 200 kB of it; a directory of small
  files gives one stream per file, or the file stored as it is where the
  streams would be larger (here: the binary files, under a model that
  expects printable ASCII). A text8 model refuses bytes it can't represent,
  another model or a damaged file is refused, and nothing is written."""
  from tf_ardm import models  # pylint: disable=g-import-not-at-top
  from tf_ardm import seeding  # pylint: disable=g-import-not-at-top
  from tf_ardm.coding import container  # pylint: disable=g-import-not-at-top
  from tf_ardm.models import checkpoints  # pylint: disable=g-import-not-at-top
  seeding.set_random_seed(0)
  config = dataclasses.replace(tiny_config("text", shape=(64, 1), num_classes=257),
                               dataset="text_bytes")
  model = models.build(config)
  # Logits +5 for printable ASCII and newline: about 6.6 bits for each of those, 14 for
  # any other byte (the network's own logits are small).
  bias = np.zeros(model.ema_network.logits.bias.shape, np.float32)
  bias[[10, *range(32, 127)]] = 5.0
  for network in (model.network, model.ema_network):
    network.logits.bias.assign(bias)
  model.heldout_loss_components = np.linspace(8.0, 0.1, 64, dtype=np.float32) / 64
  model_dir = str(tmp_path / "bytes_model")
  checkpoints.save(model, model_dir)
  text8_dir = str(tmp_path / "text8_model")
  text8 = models.build(tiny_config("text", shape=(16, 1), num_classes=28))
  text8.heldout_loss_components = np.ones(16, np.float32) / 16
  checkpoints.save(text8, text8_dir)

  rng = np.random.default_rng(0)
  files = tmp_path / "in"
  files.mkdir()
  (files / "empty").write_bytes(b"")
  (files / "one").write_bytes(b"\xff")
  (files / "all_bytes.bin").write_bytes(bytes(range(256)) * 3 + b"\0")
  (files / "bad_utf8.txt").write_bytes("Grüße, Ω\n".encode("utf-8") + b"\xc3\x28\xa0\xa1 end")
  Image.fromarray(rng.integers(0, 256, [5, 7, 3]).astype(np.uint8), "RGB").save(
      files / "image.png")
  (files / "random.bin").write_bytes(rng.bytes(5000))
  prose = (b"A paragraph of plain text, with 2 digits and a newline.\n" * 60)[:3001]
  (files / "sub").mkdir()
  (files / "sub" / "x.npy").write_bytes(b"not really an npy file")
  (files / "sub" / "prose.txt").write_bytes(prose)
  big = tmp_path / "big.txt"  # 200 kB of text, not a multiple of 64.
  big.write_bytes((b"The quick brown fox jumps over the lazy dog.\n" * 4600)[:200_003])
  originals = {p.relative_to(files): p.read_bytes() for p in files.rglob("*") if p.is_file()}
  before = _snapshot(files)
  results = forked_cli.run_many([
      ("compress", [f"--model={model_dir}", "--budget=2", str(files), str(tmp_path / "z")]),
      ("decompress", [f"--model={model_dir}", "-v", str(tmp_path / "z"),
                      str(tmp_path / "back")]),
      ("compress", [f"--model={model_dir}", "--budget=1", str(big), str(tmp_path / "big.ardm")]),
      ("decompress", [f"--model={model_dir}", str(tmp_path / "big.ardm"),
                      str(tmp_path / "big_back.bin")]),
      ("compress", [f"--model={text8_dir}", str(files / "bad_utf8.txt"),
                    str(tmp_path / "t8.ardm")]),
      ("decompress", [f"--model={text8_dir}", str(tmp_path / "z" / "one.ardm"),
                      str(tmp_path / "wrong")])], timeout=1800)
  for result in results[:4]:
    assert result[0] == 0, result[2][-3000:]
  stored = set()
  for rel, data in originals.items():
    assert (tmp_path / "back" / rel).read_bytes() == data, rel
    packed = (tmp_path / "z" / f"{rel}.ardm").read_bytes()
    original, _, streams = container.unpack(packed, str(rel))
    assert original.shape == (len(data),)
    if original.kind == container.STORED:
      stored.add(str(rel))
      assert len(packed) <= len(data) + 18 and not streams  # Header, CRC, the bytes.
    else:
      assert original.kind == container.BYTES and len(streams) == (1 if data else 0), rel
  # Binary files are stored; the prose is coded, smaller than itself.
  assert {"one", "all_bytes.bin", "image.png", "random.bin"} <= stored
  assert "sub/prose.txt" not in stored and "empty" not in stored
  assert len((tmp_path / "z" / "sub" / "prose.txt.ardm").read_bytes()) < 0.9 * len(prose)
  assert (tmp_path / "big_back.bin").read_bytes() == big.read_bytes()
  assert os.path.getsize(tmp_path / "big.ardm") < 0.9 * big.stat().st_size
  assert "stored as it is" in results[1][1]
  assert "bits/dim" in results[1][1]
  assert one_line_error(results[4], "outside the text8 alphabet"), results[4][2]
  assert one_line_error(results[5], "model fingerprint mismatch"), results[5][2]
  assert not (tmp_path / "t8.ardm").exists() and not (tmp_path / "wrong").exists()
  # A truncated or corrupted byte file, coded or stored, is refused, and nothing is written.
  packed = (tmp_path / "z" / "sub" / "prose.txt.ardm").read_bytes()
  (tmp_path / "cut.ardm").write_bytes(packed[:-5])
  flipped = bytearray(packed)
  flipped[-10] ^= 0x40
  (tmp_path / "flip.ardm").write_bytes(bytes(flipped))
  packed = (tmp_path / "z" / "random.bin.ardm").read_bytes()
  (tmp_path / "cut_stored.ardm").write_bytes(packed[:-1])
  flipped = bytearray(packed)
  flipped[-10] ^= 0x40
  (tmp_path / "flip_stored.ardm").write_bytes(bytes(flipped))
  damaged = forked_cli.run_many([
      ("decompress", [f"--model={model_dir}", str(tmp_path / name), str(tmp_path / f"{name}.out")])
      for name in ("cut.ardm", "flip.ardm", "cut_stored.ardm", "flip_stored.ardm")])
  for result in damaged:
    assert result[0] == 2 and len(result[2].strip().splitlines()) == 1, result[2][-2000:]
  assert "truncated" in damaged[2][2] and "fail their CRC" in damaged[3][2]
  assert not list(tmp_path.glob("*.ardm.out"))
  assert _snapshot(files) == before
