"""Lossless compression with the ARDM codec on the digits, text and photos test sets.

The models are the zoo's exports (savedmodels/digits, savedmodels/text,
savedmodels/photos_upscale4) unless --digits_model / --text_model /
--photos_model name another export root, codec SavedModel or trained model
directory (tf_ardm.coding.coder.load); with --train, the small digits and text
models are trained here (about a minute each) when no path is given. For each
model and budget (network calls per datapoint and stage) it reports:

  1. code lengths against the float model's exact code length
     -log2 p(x | sigma, policy) (`exact_bits`) for the same orders and
     policies: the integer model's code length (`integer_bits`, the
     distributions the codec codes with; ratio integer/exact, target
     <= 1.01), the payloads against it, and the coded bits of full
     per-datapoint streams (16-byte header), lean per-datapoint streams
     (6-byte header) and solid streams (one per max_solid datapoints);
  2. bits/dim per datapoint and for the whole set next to the classic
     codecs of tf_ardm.evaluation.baselines, measured in the same run;
  3. datapoints/s for encoding and decoding (full framing) and network calls
     per datapoint (Coder.calls: batches of at most max_batch datapoints);
  4. the share of the range coder in the codec's time: its ops alone
     (tf_ardm.coding.range_coder) on the integer frequencies the codec
     codes with (`Codec._step_symbols`), one stream per datapoint, timed
     against the whole codec's per-datapoint encode and decode.
Every stream is decoded and checked. The machine's load moves the times.

Usage: python benchmarks/compression.py [--digits_model=PATH] [--text_model=PATH]
  [--photos_model=PATH] [--train] [--datasets=digits,text] [--budgets=8,16,32,D]
  [--limit=N] [--workdir=DIR]
e.g. --datasets=photos --budgets=4,8 for the Upscale model (D = 768 per stage).
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Before tf_ardm imports TF.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tensorflow as tf  # noqa: E402  pylint: disable=wrong-import-position

from tf_ardm.coding import codec as codec_lib  # noqa: E402
from tf_ardm.coding import coder as coder_lib  # noqa: E402
from tf_ardm.coding import range_coder as coding  # noqa: E402
from tf_ardm.coding import stream  # noqa: E402
from tf_ardm.data import datasets  # noqa: E402
from tf_ardm.errors import UserError  # noqa: E402
from tf_ardm.evaluation import baselines  # noqa: E402
from tf_ardm.serving import servable  # noqa: E402

# Dataset name -> zoo export (relative to the repository).
ZOO = {"digits": "savedmodels/digits", "text": "savedmodels/text",
       "photos": "savedmodels/photos_upscale4"}
TRAIN = {
    "digits": ["--dataset=digits", "--channels=16", "--num_res_blocks=1"],
    "text": ["--dataset=text", "--seq_len=64", "--num_layers=1", "--dim=32",
             "--num_heads=2", "--mlp_dim=64"],
}
COMMON = ["--batch_size=32", "--train_steps=200", "--steps_per_epoch=100",
          "--learning_rate=2e-3", "--ema_decay=0.95"]
INTEGER_TARGET = 1.01  # integer_bits / exact_bits.


def train(name, workdir):
  """Trains the small model `name` into workdir/name; returns its model dir."""
  model_dir = os.path.join(workdir, name, "model")
  if not os.path.isdir(model_dir):
    subprocess.run([sys.executable, "-m", "tf_ardm.train", *TRAIN[name], *COMMON,
                    f"--workdir={os.path.join(workdir, name)}"], check=True,
                   stdout=subprocess.DEVNULL, cwd=REPO)
  return model_dir


def frequency_codec(coder, path):
  """An in-memory Codec of the coder's model, for its step frequencies.

  A coder built from a trained model directory holds one; for an export the
  model is restored (servable.restore_model) and calibrated as the export
  was (codec.calibration_data). Prints a note if its fingerprint differs from
  the coder's (the frequencies then come from a near copy; only their
  timing is used).
  """
  if isinstance(coder.module, codec_lib.Codec):
    return coder.module
  model = servable.restore_model(path)
  module = codec_lib.Codec(model, codec_lib.calibration_data(model.config), coder.max_batch)
  if module.fingerprint != coder.fingerprint:
    print(f"  note: the rebuilt codec's fingerprint {module.fingerprint.hex()} differs from "
          f"the export's {coder.fingerprint.hex()}")
  return module


def step_groups(module, x, budget):
  """Teacher-forced [(symbols int32 [N, n_j], freqs int64 [N, n_j, A])].

  One entry per policy step of every stage (stage 0 first): the choices and
  integer frequencies the encoder codes, from the Codec's `_step_symbols`.
  """
  policies = module._stage_policies(tf.constant(budget)).numpy()  # pylint: disable=protected-access
  flat = tf.reshape(tf.constant(x, tf.int32), [len(x), -1])
  groups = []
  for stage, policy in enumerate(policies):
    steps = list(policy) + [module.num_steps]
    for left, right in zip(steps[:-1], steps[1:]):
      groups.append(module._step_symbols(  # pylint: disable=protected-access
          flat, tf.constant(stage), tf.constant(left), tf.constant(right)))
  return groups


def time_coding(groups):
  """Seconds to range-code the groups and to decode them: one stream per datapoint."""
  symbols = [s for s, _ in groups]
  freqs = [f for _, f in groups]

  @tf.function
  def encode():
    handle = coding.encoder(tf.shape(symbols[0])[:1])
    for s, f in zip(symbols, freqs):
      handle = coding.encode(handle, s, f)
    return coding.finish_encoder(handle)

  @tf.function
  def decode(strings):
    handle, out = coding.decoder(strings), []
    for f in freqs:
      handle, s = coding.decode(handle, f)
      out.append(s)
    return out

  strings = encode()
  decode(strings)  # Traces both.
  start = time.perf_counter()
  strings = encode()
  mid = time.perf_counter()
  decoded = decode(strings)
  end = time.perf_counter()
  if not all(np.array_equal(a, b) for a, b in zip(decoded, symbols)):
    raise AssertionError("the range coder alone did not decode its symbols")
  return mid - start, end - mid


def timed(fn, *args):
  start = time.perf_counter()
  out = fn(*args)
  return out, time.perf_counter() - start


def _header_bits(streams, fingerprint, lean=False):
  return 8.0 * sum(stream.read_header(s, fingerprint, lean).size for s in streams)


def _check(name, got, want):
  if not np.array_equal(got, want):
    raise AssertionError(f"{name}: the decoded data differ from the input")


def measure(coder, module, x, budget):
  """The figures of one budget (a dict), every stream decoded and checked."""
  n, fp = len(x), coder.fingerprint
  exact = coder.exact_bits(x, budget).sum()
  integer = coder.integer_bits(x, budget).sum()
  calls = coder.calls
  full, t_enc = timed(coder.compress_each, x, budget)
  calls = coder.calls - calls
  back, t_dec = timed(coder.decompress_each, full)
  _check("full streams", back, x)
  lean = coder.compress_each(x, budget, lean=True)
  _check("lean streams", coder.decompress_each(lean, lean=True), x)
  parts = coder.parts(n)
  solids, t_senc = timed(lambda: [coder.compress(x[p], budget) for p in parts])
  back, t_sdec = timed(lambda: np.concatenate([coder.decompress(s) for s in solids]))
  _check("solid streams", back, x)
  full_bits = 8.0 * sum(map(len, full))
  lean_bits = 8.0 * sum(map(len, lean))
  solid_bits = 8.0 * sum(map(len, solids))
  payload_bits = full_bits - _header_bits(full, fp)
  if payload_bits != lean_bits - _header_bits(lean, fp, lean=True):
    raise AssertionError("full and lean streams differ in their payloads")
  t_code_enc, t_code_dec = time_coding(step_groups(module, x, budget))
  return {
      "budget": budget, "exact": exact, "integer": integer, "payload": payload_bits,
      "full": full_bits, "lean": lean_bits, "solid": solid_bits,
      "solid_payload": solid_bits - _header_bits(solids, fp),
      "full_header": stream.read_header(full[0], fp).size,
      "lean_header": stream.read_header(lean[0], fp, lean=True).size,
      "solid_header": stream.read_header(solids[0], fp).size,
      "enc": n / t_enc, "dec": n / t_dec, "senc": n / t_senc, "sdec": n / t_sdec,
      "calls": calls / n, "code_enc": t_code_enc / t_enc, "code_dec": t_code_dec / t_dec}


def evaluate(name, path, budgets, limit):
  """Prints the tables for one model."""
  coder = coder_lib.load(path)
  config = coder.config
  module = frequency_codec(coder, path)
  x = datasets.split(config, "test", limit=limit)
  train_x = datasets.split(config, "train")
  n, d, s = len(x), config.num_steps, config.num_stages
  budgets = sorted({d if b == "D" else min(int(b), d) for b in budgets})
  print(f"\n== {name} ({path}): {n} test datapoints of shape {list(config.shape)}, "
        f"K = {config.num_classes}, D = {d}, stages {s}; arithmetic {coder.arithmetic}, "
        f"max_batch {coder.max_batch}, max_solid {coder.max_solid} ==", flush=True)
  # Warm-up: traces the functions and compiles the network for the batch
  # shape of the timed calls (min(N, max_batch) rows; the budget is a tensor).
  warm = x[:coder.max_batch]
  for lean in (False, True):
    coder.decompress_each(coder.compress_each(warm, budgets[0], lean), lean=lean)
  coder.decompress(coder.compress(warm, budgets[0]))
  rows = []
  for budget in budgets:
    start = time.perf_counter()
    rows.append(measure(coder, module, x, budget))
    print(f"  [budget {budget}: {time.perf_counter() - start:.0f} s]", flush=True)
  r0 = rows[0]
  print(f"(1) code lengths / the float model's exact code length (same sigma and policy); "
        f"headers: full {r0['full_header']}, lean {r0['lean_header']}, solid "
        f"{r0['solid_header']} bytes per stream")
  _table(["budget", "exact bpd", "integer bpd", "integer/exact",
          f"<= {INTEGER_TARGET}", "payload/integer", "streams/exact", "lean/exact",
          "solid/exact"],
         [(r["budget"], f"{r['exact'] / (n * d):.4f}", f"{r['integer'] / (n * d):.4f}",
           f"{r['integer'] / r['exact']:.5f}",
           "yes" if r["integer"] / r["exact"] <= INTEGER_TARGET else "NO",
           f"{r['payload'] / r['integer']:.5f}", f"{r['full'] / r['exact']:.4f}",
           f"{r['lean'] / r['exact']:.4f}", f"{r['solid'] / r['exact']:.5f}")
          for r in rows])
  print("(3) throughput (datapoints/s, full framing) and network calls per datapoint "
        "(per-datapoint encode)")
  _table(["budget", "encode", "decode", "solid enc", "solid dec", "calls/datapoint"],
         [(r["budget"], f"{r['enc']:.2f}", f"{r['dec']:.2f}", f"{r['senc']:.2f}",
           f"{r['sdec']:.2f}", f"{r['calls']:.3f}") for r in rows])
  print("(4) share of the range coder ops (alone, on the same integer frequencies) in "
        "the codec's per-datapoint encode and decode time")
  _table(["budget", "encode", "decode"],
         [(r["budget"], f"{100 * r['code_enc']:.1f}%", f"{100 * r['code_dec']:.1f}%")
          for r in rows])
  print("(2) bits/dim next to the classic codecs (same run)")
  ours = []
  for r in rows:
    ours += [(f"ARDM budget {r['budget']}, per datapoint", r["full"] / (n * d)),
             (f"ARDM budget {r['budget']}, per datapoint, lean", r["lean"] / (n * d)),
             (f"ARDM budget {r['budget']}, whole set (solid)", r["solid"] / (n * d))]
  table = ours + baselines.table(x, config.num_classes, train_x)
  print(baselines.format_table(table, reference=rows[-1]["solid"] / (n * d)), flush=True)


def _table(header, rows):
  rows = [[str(c) for c in row] for row in rows]
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  for line in [header] + rows:
    print("  " + "  ".join(c.rjust(w) for c, w in zip(line, widths)))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--digits_model", help="digits export root, codec SavedModel or "
                      "trained model directory (default: the zoo's)")
  parser.add_argument("--text_model", help="text model, likewise")
  parser.add_argument("--photos_model", help="photos (Upscale) model, likewise")
  parser.add_argument("--train", action="store_true",
                      help="train small digits and text models in --workdir when no path "
                           "is given, instead of the zoo's")
  parser.add_argument("--datasets", default="digits,text",
                      help="which of digits,text,photos to run")
  parser.add_argument("--budgets", default="8,16,32,D",
                      help="budgets per stage, comma-separated; D: the full budget")
  parser.add_argument("--limit", type=int, default=None, help="test datapoints")
  parser.add_argument("--workdir", default="/tmp/ardm_compression_benchmark",
                      help="where --train trains its models")
  args = parser.parse_args(argv)
  budgets = args.budgets.split(",")
  for b in budgets:
    if b != "D" and not (b.isdigit() and int(b) > 0):
      parser.error(f"--budgets: {b!r} is neither a positive integer nor D")
  names = args.datasets.split(",")
  for name in names:
    if name not in ZOO:
      parser.error(f"--datasets: unknown {name!r}; choose from {','.join(ZOO)}")
  print(f"{os.cpu_count()} CPU cores, shared with other jobs (load average "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg()) + ")")
  for name in names:
    path = getattr(args, f"{name}_model")
    if path is None:
      path = (train(name, args.workdir) if args.train and name in TRAIN
              else os.path.join(REPO, ZOO[name]))
    start = time.perf_counter()
    evaluate(name, path, budgets, args.limit)
    print(f"[{name}: {time.perf_counter() - start:.0f} s]")
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main())
  except UserError as e:
    sys.exit(f"error: {e}")
