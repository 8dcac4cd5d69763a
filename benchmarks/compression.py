"""Lossless compression with the ARDM codec on the digits and text test sets.

For each model (trained here in about a minute each unless --digits_model /
--text_model name trained model directories) and each budget it reports:

  1. coded bits / the model's exact code length -log2 p(x | sigma, policy)
     for the same order and policy: per-datapoint payloads alone and with
     their headers, and solid streams (one per max_solid datapoints) without
     and with their header (target <= 1.002);
  2. bits/dim per datapoint and for the whole set next to the classic
     codecs of tf_ardm.evaluation.baselines, measured in the same run;
  3. datapoints/s for encoding and decoding and network calls per datapoint;
  4. the share of entropy coding in the codec's time: the range coder ops
     alone on the same probabilities, timed against the whole codec
     (target < 10%).
Every stream is decoded and checked.

Usage: python benchmarks/compression.py [--digits_model=DIR] [--text_model=DIR]
  [--datasets=digits,text] [--budgets=8,16,32,D] [--limit=N] [--workdir=DIR]
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_ardm.evaluation import baselines  # noqa: E402
from tf_ardm.models import checkpoints  # noqa: E402
from tf_ardm.coding import codec as codec_lib  # noqa: E402
from tf_ardm.coding import range_coder as coding  # noqa: E402
from tf_ardm.generation import distributions  # noqa: E402
from tf_ardm.generation import masks  # noqa: E402
from tf_ardm.coding import stream  # noqa: E402
from tf_ardm.data import datasets  # noqa: E402

TRAIN = {
    "digits": ["--dataset=digits", "--channels=16", "--num_res_blocks=1"],
    "text": ["--dataset=text", "--seq_len=64", "--num_layers=1", "--dim=32",
             "--num_heads=2", "--mlp_dim=64"],
}
COMMON = ["--batch_size=32", "--train_steps=200", "--steps_per_epoch=100",
          "--learning_rate=2e-3", "--ema_decay=0.95"]


def train(name, workdir):
  """Trains the small model `name` into workdir/name; returns its model dir."""
  model_dir = os.path.join(workdir, name, "model")
  if not os.path.isdir(model_dir):
    subprocess.run([sys.executable, "-m", "tf_ardm.train", *TRAIN[name], *COMMON,
                    f"--workdir={os.path.join(workdir, name)}"], check=True,
                   stdout=subprocess.DEVNULL)
  return model_dir


def step_groups(codec, x, budget):
  """Teacher-forced [(symbols int32 [N, n_j], safe probs float32 [N, n_j, K])].

  One entry per policy step, the probabilities the encoder codes with.
  """
  policy = list(codec.policy(budget).numpy()) + [codec.num_steps]
  sigma = codec.sigma[0]
  n = len(x)
  flat = tf.reshape(tf.constant(x, tf.int32), [n, -1])
  groups = []
  for left, right in zip(policy[:-1], policy[1:]):
    known = tf.tile(tf.cast(sigma < left, tf.int32)[None], [n, 1])
    logits = codec.denoiser.logits(
        tf.reshape(masks.corrupt(flat, known, codec.absorbing), x.shape),
        tf.fill([n], left), known)
    current = codec.order[0, left:right]
    logits = tf.gather(tf.reshape(logits, [n, codec.num_steps, -1]), current, axis=1)
    groups.append((tf.gather(flat, current, axis=1), distributions.safe_probs(logits)))
  return groups


def time_coding(groups):
  """Seconds to range-code and decode the groups: one stream per datapoint."""
  symbols = [s for s, _ in groups]
  probs = [p for _, p in groups]

  @tf.function
  def encode():
    handle = coding.encoder(tf.shape(symbols[0])[:1])
    for s, p in zip(symbols, probs):
      handle = coding.encode(handle, s, p)
    return coding.finish_encoder(handle)

  @tf.function
  def decode(strings):
    handle, out = coding.decoder(strings), []
    for p in probs:
      handle, s = coding.decode(handle, p)
      out.append(s)
    return out

  strings = encode()
  decode(strings)  # Traces both.
  start = time.perf_counter()
  strings = encode()
  mid = time.perf_counter()
  decoded = decode(strings)
  end = time.perf_counter()
  assert all(np.array_equal(a, b) for a, b in zip(decoded, symbols))
  return mid - start, end - mid


def timed(fn, *args):
  start = time.perf_counter()
  out = fn(*args)
  return out, time.perf_counter() - start


def evaluate(name, model_dir, budgets, limit):
  """Prints the tables for one model; returns its baseline rows."""
  model = checkpoints.restore(model_dir)
  config = model.config
  coder = codec_lib.Coder(codec_lib.Codec(model), config)
  data = datasets.load(config.dataset, seq_len=config.shape[0])
  x, train_x = data.splits["test"][:limit], data.splits["train"]
  n, d = len(x), config.num_steps
  budgets = sorted({d if b == "D" else min(int(b), d) for b in budgets})
  print(f"\n== {name}: {n} test datapoints of shape {list(config.shape)}, K = "
        f"{config.num_classes}, D = {d}, micro-batch {coder.micro_batch} ==")
  rows, ours = [], []
  for budget in budgets:
    # Warm-up: traces the functions outside the timings.
    coder.decompress_each(coder.compress_each(x[:1], budget))
    coder.decompress(coder.compress(x[:1], budget))
    exact = coder.exact_bits(x, budget)
    streams, t_enc = timed(coder.compress_each, x, budget)
    back, t_dec = timed(coder.decompress_each, streams)
    solids, t_senc = timed(lambda: [coder.compress(x[p], budget) for p in coder.parts(n)])
    solid_back, t_sdec = timed(lambda: np.concatenate([coder.decompress(s) for s in solids]))
    assert np.array_equal(back, x) and np.array_equal(solid_back, x)
    header = stream.read_header(streams[0], coder.fingerprint).size
    each_bits = 8.0 * sum(map(len, streams))
    payload_bits = each_bits - 8.0 * sum(stream.read_header(s, coder.fingerprint).size
                                         for s in streams)
    solid_bits = 8.0 * sum(map(len, solids))
    solid_payload_bits = solid_bits - 8.0 * sum(
        stream.read_header(s, coder.fingerprint).size for s in solids)
    t_code_enc, t_code_dec = time_coding(step_groups(coder.module, x, budget))
    rows.append((budget, exact.sum() / (n * d), payload_bits / exact.sum(),
                 each_bits / exact.sum(), solid_bits / exact.sum(), each_bits / (n * d),
                 solid_bits / (n * d), n / t_enc, n / t_dec, n / t_senc, n / t_sdec,
                 budget * -(-n // coder.micro_batch) / n,
                 t_code_enc / t_enc, t_code_dec / t_dec, solid_payload_bits / exact.sum()))
    ours += [(f"ARDM budget {budget}, per datapoint", each_bits / (n * d)),
             (f"ARDM budget {budget}, whole set (solid)", solid_bits / (n * d))]
  print(f"(1) coded bits / model exact code length (same sigma and policy); "
        f"header {header} bytes per stream")
  _table(["budget", "exact bpd", "payload/exact", "streams/exact", "solid payload/exact",
          "solid/exact"],
         [(r[0], f"{r[1]:.4f}", f"{r[2]:.4f}", f"{r[3]:.4f}", f"{r[14]:.5f}", f"{r[4]:.5f}")
          for r in rows])
  print("(3) throughput (datapoints/s) and network calls per datapoint "
        "(incl. micro-batch padding)")
  _table(["budget", "encode", "decode", "solid enc", "solid dec", "calls/datapoint"],
         [(r[0], f"{r[7]:.1f}", f"{r[8]:.1f}", f"{r[9]:.1f}", f"{r[10]:.1f}",
           f"{r[11]:.2f}") for r in rows])
  print("(4) share of time in entropy coding (range coder ops) vs the whole codec")
  _table(["budget", "encode", "decode"],
         [(r[0], f"{100 * r[12]:.1f}%", f"{100 * r[13]:.1f}%") for r in rows])
  print("(2) bits/dim next to the classic codecs (same run)")
  table = ours + baselines.table(x, config.num_classes, train_x)
  print(baselines.format_table(table, reference=rows[-1][6]))


def _table(header, rows):
  rows = [[str(c) for c in row] for row in rows]
  widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
  for line in [header] + rows:
    print("  " + "  ".join(c.rjust(w) for c, w in zip(line, widths)))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--digits_model", help="trained digits model directory")
  parser.add_argument("--text_model", help="trained text model directory")
  parser.add_argument("--datasets", default="digits,text",
                      help="which of digits,text to run")
  parser.add_argument("--budgets", default="8,16,32,D")
  parser.add_argument("--limit", type=int, default=None, help="test datapoints")
  parser.add_argument("--workdir", default="/tmp/ardm_compression_benchmark",
                      help="where models are trained when not given")
  args = parser.parse_args(argv)
  budgets = args.budgets.split(",")
  for name, path in (("digits", args.digits_model), ("text", args.text_model)):
    if name not in args.datasets.split(","):
      continue
    evaluate(name, path or train(name, args.workdir), budgets, args.limit)


if __name__ == "__main__":
  main()
