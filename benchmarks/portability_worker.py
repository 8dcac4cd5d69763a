r"""One environment of the codec portability check (run by benchmarks/portability.py).

  python benchmarks/portability_worker.py --codec=savedmodels/digits/codec \
      --data=x.npy --budget=8 --batches=1,7,16,64 --out=result.json \
      [--reference=env0_streams.npz] [--save_streams=streams.npz]

Standalone: it imports only numpy, tensorflow and the range coder ops
(`tensorflow_compression` under TF 2.14, `tensorflow_compression_ops` under
TF 2.17), not tf_ardm, so that it runs under every TensorFlow stack the
check covers. The environment (oneDNN, XLA, threads, CPU affinity) is set by
whoever starts it, through the usual variables.

It loads the codec export, then for each batch size B:
  encode   `compress_batch` on consecutive slices of B datapoints of
           x int32 [N, *shape] (the last slice shorter); the N streams'
           SHA-256 (each stream as its length, 8 bytes little-endian, then its
           bytes, in order), their total bytes and the encode seconds;
  decode   `decompress_batch` on the same streams in slices of B; exact when
           every datapoint equals the input.
It then checks that all batch sizes gave the same streams. With
--reference (streams of another environment, saved by --save_streams there)
it decodes those too, at each batch size the two share, and reports
whether that decode is exact. TF errors (a stream this environment rejects,
an op that fails) are caught and reported in the result; the process exits
0 whenever it wrote its JSON result, 2 on bad arguments.

The result JSON: {"env": {...}, "codec", "codec_info" (the export's, e.g.
micro_batch or max_batch), "fingerprint" (hex), "count", "shape", "budget",
"error" (null unless loading failed), "batches": {B:
{"sha256", "bytes", "encode_s", "decode_s", "exact", "decoded_ok"
(datapoints decoded exactly), "error"}}, "identical_across_batches",
"own_exact", "reference": null or {"path", "batches": {B: {"exact",
"decoded_ok", "decode_s", "error"}}, "exact"}}.
"""
import argparse
import hashlib
import json
import os
import platform
import re
import sys
import time

import numpy as np
import tensorflow as tf

try:  # TF 2.14: the full package registers the range coder ops.
  import tensorflow_compression  # noqa: F401  pylint: disable=unused-import
  OPS_PACKAGE = "tensorflow_compression"
except ImportError:  # TF 2.17: the ops-only package registers the same ops.
  import tensorflow_compression_ops  # noqa: F401  pylint: disable=unused-import
  OPS_PACKAGE = "tensorflow_compression_ops"

ENV_VARIABLES = ("TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "TF_ARDM_XLA", "TF_NUM_INTRAOP_THREADS",
                 "TF_NUM_INTEROP_THREADS")


def _first_line(error):
  """`ExceptionType: reason` on one line, for reports.

  For a failed graph assertion the reason is the assertion's data (e.g. the
  codec's "CRC mismatch: ..."); otherwise the first line that is not TF's
  "Graph execution error" / node boilerplate.
  """
  text = str(getattr(error, "message", error))
  found = re.search(r"assertion failed: \[(.*)\]\s*$", text, re.M)
  if found:
    reason = " ".join(found.group(1).split("] ["))
  else:
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(
        ("Graph execution error", "Detected at node", "File ", "[[{{", "<stack"))]
    reason = lines[0] if lines else ""
  return f"{type(error).__name__}: {reason}"[:300]


def set_threads():
  """Applies TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS explicitly.

  Must run before the first op. (TF reads them itself too; this makes the
  count certain and lets describe() report it.)
  """
  for name, setter in [("TF_NUM_INTRAOP_THREADS",
                        tf.config.threading.set_intra_op_parallelism_threads),
                       ("TF_NUM_INTEROP_THREADS",
                        tf.config.threading.set_inter_op_parallelism_threads)]:
    if os.environ.get(name, "").isdigit():
      setter(int(os.environ[name]))


def cpu_model():
  """The CPU's model name (/proc/cpuinfo), else platform.processor()."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def describe():
  """The environment as a JSON-able dict: versions, build, oneDNN, XLA, threads."""
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
    onednn = bool(_pywrap_util_port.IsMklEnabled())
  except (ImportError, AttributeError):
    onednn = None
  try:
    build = {k: str(v) for k, v in tf.sysconfig.get_build_info().items()}
  except AttributeError:
    build = {}
  affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
  return {
      "tf_version": tf.__version__, "tf_git_version": tf.version.GIT_VERSION,
      "ops_package": OPS_PACKAGE, "numpy_version": np.__version__,
      "python_version": platform.python_version(), "build_info": build,
      "onednn_enabled": onednn, "jit": str(tf.config.optimizer.get_jit()),
      "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
      "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
      "cpu_affinity": affinity, "cpu_model": cpu_model(),
      "devices": [d.name for d in tf.config.list_physical_devices()],
      "variables": {name: os.environ.get(name) for name in ENV_VARIABLES}}


def digest(streams):
  """SHA-256 hex of a list of byte strings: per stream its length (8 bytes LE), then it."""
  h = hashlib.sha256()
  for s in streams:
    h.update(len(s).to_bytes(8, "little"))
    h.update(s)
  return h.hexdigest()


def slices(n, size):
  """Consecutive slices of `size` over range(n), the last one shorter."""
  return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def encode(module, x, budget, size):
  """(streams list of bytes [N], seconds, error or None) for slices of `size`."""
  streams, start = [], time.perf_counter()
  try:
    for part in slices(len(x), size):
      out = module.compress_batch(x=tf.constant(x[part]), budget=tf.constant(budget, tf.int32))
      streams += [bytes(s) for s in out.numpy()]
  except Exception as e:  # pylint: disable=broad-except
    return None, time.perf_counter() - start, _first_line(e)
  return streams, time.perf_counter() - start, None


def decode(module, streams, x, size):
  """{"exact", "decoded_ok", "decode_s", "error"}: decodes streams in slices of `size`.

  A slice whose call fails counts as not decoded; the first error is kept.
  """
  ok, error, start = 0, None, time.perf_counter()
  for part in slices(len(streams), size):
    try:
      y = module.decompress_batch(streams=tf.constant(streams[part], tf.string)).numpy()
    except Exception as e:  # pylint: disable=broad-except
      error = error or _first_line(e)
      continue
    want = x[part]
    if y.shape != want.shape:
      error = error or f"decoded shape {list(y.shape)}, expected {list(want.shape)}"
      continue
    ok += int(np.sum(np.all(y.reshape(len(want), -1) == want.reshape(len(want), -1), axis=1)))
  seconds = time.perf_counter() - start
  return {"exact": ok == len(x) and len(streams) == len(x), "decoded_ok": ok,
          "decode_s": round(seconds, 3), "error": error}


def save_streams(path, by_batch):
  """Writes {B: streams} to an .npz without pickles: b<B>_data uint8, b<B>_lengths int64."""
  arrays = {}
  for size, streams in by_batch.items():
    arrays[f"b{size}_lengths"] = np.array([len(s) for s in streams], np.int64)
    arrays[f"b{size}_data"] = np.frombuffer(b"".join(streams), np.uint8)
  np.savez(path, **arrays)


def load_streams(path):
  """{B: list of bytes} from an .npz written by save_streams."""
  out = {}
  with np.load(path, allow_pickle=False) as f:
    for key in f.files:
      if key.endswith("_lengths"):
        size = int(key[1:-len("_lengths")])
        data, lengths = f[f"b{size}_data"].tobytes(), f[key]
        ends = np.cumsum(lengths)
        out[size] = [data[e - n:e] for e, n in zip(ends.tolist(), lengths.tolist())]
  return out


def codec_info(module):
  """The export's codec_info() as JSON values: bytes fields as hex (the
  fingerprint), other strings as text, numbers as numbers."""
  out = {}
  for key, value in module.codec_info().items():
    value = value.numpy()
    if isinstance(value, bytes):
      out[key] = value.hex() if key == "fingerprint" else value.decode(errors="replace")
    else:
      out[key] = value.item() if hasattr(value, "item") else value
  return out


def run(codec, x, budget, batches, reference=None, streams_out=None):
  """The result dict (module doc) of one environment."""
  result = {"env": describe(), "codec": codec, "count": int(len(x)),
            "shape": list(x.shape[1:]), "budget": int(budget), "error": None,
            "codec_info": None, "fingerprint": None, "batches": {},
            "identical_across_batches": False, "own_exact": False, "reference": None}
  try:
    start = time.perf_counter()
    module = tf.saved_model.load(codec)
    if hasattr(module, "use_xla"):  # Format 2: XLA or plain TF for the integer network.
      module.use_xla.assign(os.environ.get("TF_ARDM_XLA", "1") == "1")
      result["use_xla"] = bool(module.use_xla.numpy())
      # 3x3 convolutions as conv kernels, or im2col and matmul (a GPU's path).
      module.direct_conv.assign(os.environ.get("TF_ARDM_CONV", "direct") == "direct")
      result["direct_conv"] = bool(module.direct_conv.numpy())
    result["codec_info"] = info = codec_info(module)
    result["fingerprint"] = info.get("fingerprint")
    result["load_s"] = round(time.perf_counter() - start, 3)
  except Exception as e:  # pylint: disable=broad-except
    result["error"] = f"cannot load {codec}: {_first_line(e)}"
    return result
  by_batch = {}
  for size in batches:
    streams, seconds, error = encode(module, x, budget, size)
    entry = {"sha256": None, "bytes": None, "encode_s": round(seconds, 3), "decode_s": None,
             "exact": False, "decoded_ok": 0, "error": error}
    if streams is not None:
      by_batch[size] = streams
      entry.update(sha256=digest(streams), bytes=sum(len(s) for s in streams))
      decoded = decode(module, streams, x, size)
      entry.update(decode_s=decoded["decode_s"], exact=decoded["exact"],
                   decoded_ok=decoded["decoded_ok"], error=decoded["error"])
    result["batches"][str(size)] = entry
  hashes = {e["sha256"] for e in result["batches"].values()}
  result["identical_across_batches"] = len(hashes) == 1 and None not in hashes
  result["own_exact"] = all(e["exact"] for e in result["batches"].values())
  if streams_out:
    save_streams(streams_out, by_batch)
  if reference:
    result["reference"] = decode_reference(module, x, batches, reference)
  return result


def decode_reference(module, x, batches, path):
  """Decodes another environment's streams at each shared batch size."""
  out = {"path": path, "batches": {}, "exact": False, "error": None}
  try:
    theirs = load_streams(path)
  except (OSError, ValueError, KeyError) as e:
    out["error"] = f"cannot read {path}: {_first_line(e)}"
    return out
  for size in batches:
    if size in theirs:
      out["batches"][str(size)] = decode(module, theirs[size], x, size)
  out["exact"] = bool(out["batches"]) and all(e["exact"] for e in out["batches"].values())
  if not out["batches"]:
    out["error"] = f"{path} holds none of the batch sizes {list(batches)}"
  return out


def _batches(text):
  try:
    sizes = [int(b) for b in text.split(",") if b.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
  if not sizes or min(sizes) < 1:
    raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
  return sizes


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--codec", required=True, help="codec SavedModel directory")
  parser.add_argument("--data", required=True, help=".npy of int32 datapoints [N, *shape]")
  parser.add_argument("--budget", type=int, required=True)
  parser.add_argument("--batches", type=_batches, default=[1, 7, 16, 64])
  parser.add_argument("--out", required=True, help="where to write the JSON result")
  parser.add_argument("--reference", help=".npz of another environment's streams to decode")
  parser.add_argument("--save_streams", help="write this environment's streams to this .npz")
  args = parser.parse_args(argv)
  try:
    x = np.load(args.data, allow_pickle=False)
  except (OSError, ValueError) as e:
    parser.exit(2, f"error: cannot read --data {args.data}: {_first_line(e)}\n")
  if x.ndim < 2 or x.dtype.kind not in "iu":
    parser.exit(2, f"error: --data must hold integers [N, *shape], got {x.dtype} {x.shape}\n")
  set_threads()
  result = run(args.codec, x.astype(np.int32), args.budget, args.batches, args.reference,
               args.save_streams)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
