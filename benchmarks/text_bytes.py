r"""The byte-level ARDM against classic coders on held-out text, per record and per file.

  .venv/bin/python benchmarks/text_bytes.py [--model=savedmodels/text_bytes] \
      [--budget=32] [--sizes=64,256,1024] [--records=400] [--files=12] \
      [--file_bytes=150000] \
      [--sources=stdlib_test,tfp]

Held-out text, never trained on (the model trains on the `train` split of
text_bytes: Python's documentation topics and standard-library sources):
  * stdlib_test: the documents of text_bytes' test split (stdlib files and
    documentation topics whose names hash to it; tf_ardm/data/byte_text.py);
  * tfp: the Python sources of the installed tensorflow-probability (0.22.1
    on the TF 2.14 stack), a code base other than the training text.

Per record size n (64, 256, 1024 bytes): consecutive n-byte records of the
source's documents (the first `--records`, spread evenly over all), each
coded as its own stream by every codec: the ARDM (one lean stream per
record: 6 bytes of framing, the model named by the caller; a record longer
than the model's 256 bytes is several chunks in one solid stream), gzip,
bz2, xz, brotli (quality 11), zstd (level 19), and zstd level 19 with a
dictionary trained on the same size of records of the training text
(zstandard.train_dictionary; frames without dictionary id or checksum).
Whole files: the first `--files` documents of the source in name order
that fit in `--file_bytes` together, each one file:
the ARDM's .ardm container (tf_ardm.compress's output) against each coder
on the whole file.

Every ARDM stream is decoded and checked, and so is every dictionary
frame. Times are seconds for the whole set, encode and decode; the machine's
load moves them. The bar (issue 18): at 256 bytes, ARDM bytes <= 0.7 x
brotli and <= zstd with its dictionary, in the same run.
"""
import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Before tf_ardm imports TF.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tf_ardm.coding import coder as coder_lib  # noqa: E402
from tf_ardm.coding import container  # noqa: E402
from tf_ardm.data import byte_text  # noqa: E402
from tf_ardm.data import datasets  # noqa: E402
from tf_ardm.errors import UserError  # noqa: E402
from tf_ardm.evaluation import baselines  # noqa: E402

CLASSIC = ("gzip", "bz2", "xz", "brotli", "zstd")
ZSTD_LEVEL = 19
BAR_SIZE, BROTLI_BAR = 256, 0.7


def package_sources(package):
  """{relative path: bytes} of the .py files of an installed package, sorted."""
  import importlib  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(importlib.import_module(package).__file__)
  docs = {}
  for folder, subdirs, files in os.walk(root):
    subdirs.sort()
    for name in sorted(files):
      if name.endswith(".py"):
        with open(os.path.join(folder, name), "rb") as f:
          data = f.read()
        if data:
          docs[os.path.relpath(os.path.join(folder, name), root)] = data
  return docs


def sources(names, corpus):
  """{source name: (description, {document name: bytes})}; corpus:
  byte_text.documents()."""
  out = {}
  for name in names:
    if name == "stdlib_test":
      out[name] = ("text_bytes test split (held-out stdlib files and topics)",
                   {k: v for k, v in corpus.items() if byte_text.split_of(k) == "test"})
    elif name == "tfp":
      import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
      out[name] = (f"tensorflow-probability {tfp.__version__} sources",
                   package_sources("tensorflow_probability"))
    else:
      raise UserError(f"unknown source {name!r}; choose stdlib_test or tfp")
  return out


def records(docs, size, limit):
  """The first `limit` of all consecutive `size`-byte records of the
  documents, evenly spread (a fixed selection)."""
  every = [d[i:i + size] for _, d in sorted(docs.items())
           for i in range(0, len(d) - size + 1, size)]
  if len(every) > limit:
    every = [every[i] for i in np.linspace(0, len(every) - 1, limit).astype(int)]
  return every


def training_records(corpus, size, count=20000):
  """`size`-byte records of the training text of `corpus`
  (byte_text.documents()), for the zstd dictionary."""
  docs = {k: v for k, v in corpus.items() if byte_text.split_of(k) == "train"}
  return records(docs, size, count)


def ardm_records(coder, recs, budget):
  """(stream bytes, encode s, decode s) of one lean stream per record."""
  length = coder.shape[0]
  chunks = [byte_text.pad_chunks(r, length) for r in recs]
  start = time.perf_counter()
  if all(len(c) == 1 for c in chunks):
    streams = coder.compress_each(np.concatenate(chunks), budget, lean=True)
  else:
    streams = [coder.compress(c, budget, lean=True) for c in chunks]
  mid = time.perf_counter()
  if all(len(c) == 1 for c in chunks):
    back = list(coder.decompress_each(streams, lean=True)[:, None])
  else:
    back = [coder.decompress(s, lean=True) for s in streams]
  end = time.perf_counter()
  for r, b in zip(recs, back):
    if byte_text.to_bytes(b) != r:
      raise AssertionError("an ARDM record did not decode exactly")
  return [len(s) for s in streams], mid - start, end - mid


def ardm_file(coder, data, budget):
  """The .ardm container bytes of one file (as tf_ardm.compress writes it)."""
  x = byte_text.pad_chunks(data, coder.shape[0])
  streams = [coder.compress(x[part], budget, lean=True) for part in coder.parts(len(x))]
  packed = container.pack(container.Original(container.BYTES, (len(data),)), streams,
                          coder.fingerprint, coder.arithmetic)
  parts = [coder.decompress(s, lean=True) for s in streams]
  back = np.concatenate(parts) if parts else x
  if byte_text.to_bytes(back)[:len(data)] != data:
    raise AssertionError("an ARDM file did not decode exactly")
  return len(packed)


def classic(recs, codec, dictionary=None):
  """(sizes, encode s, decode s or None) of each record on its own."""
  if dictionary is not None:
    encode, decode = baselines.zstd_dictionary_coder(dictionary, ZSTD_LEVEL)
  else:
    encode, decode = lambda r: baselines.compress(r, codec, zstd_level=ZSTD_LEVEL), None
  start = time.perf_counter()
  out = [encode(r) for r in recs]
  mid = time.perf_counter()
  if decode is not None:
    for r, c in zip(recs, out):
      if decode(c) != r:
        raise AssertionError("a zstd dictionary frame did not decode exactly")
  end = time.perf_counter()
  return [len(c) for c in out], mid - start, (end - mid) if decode is not None else None


def print_table(title, rows, raw, reference):
  """rows: [(name, total bytes, encode s, decode s)]."""
  print(title)
  print(f"  {'codec':<28} {'bytes':>9} {'bits/byte':>9} {'/ARDM':>7} {'enc s':>8} {'dec s':>8}")
  for name, total, enc, dec in rows:
    times = " ".join(f"{t:8.2f}" if t is not None else f"{'-':>8}" for t in (enc, dec))
    print(f"  {name:<28} {total:9d} {8 * total / raw:9.3f} {total / reference:7.3f} {times}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default=os.path.join(REPO, "savedmodels", "text_bytes"))
  parser.add_argument("--budget", type=int, default=32)
  parser.add_argument("--sizes", default="64,256,1024")
  parser.add_argument("--records", type=int, default=400, help="records per size and source")
  parser.add_argument("--files", type=int, default=12, help="whole files per source")
  parser.add_argument("--file_bytes", type=int, default=150000,
                      help="at most this many bytes of whole files per source")
  parser.add_argument("--sources", default="stdlib_test,tfp")
  args = parser.parse_args()
  coder = coder_lib.load(args.model)
  if not datasets.is_bytes(coder.config):
    raise UserError(f"{args.model} is not a byte model (K = {coder.config.num_classes})")
  budget = coder.check_budget(args.budget)
  sizes = [int(s) for s in args.sizes.split(",")]
  print(f"model {args.model}: chunks of {coder.shape[0]} bytes, budget {budget} network "
        f"calls per chunk, batches of up to {coder.max_batch}")
  corpus = byte_text.documents()
  print(byte_text.corpus_summary(corpus))
  dictionaries = {}
  verdicts = []
  for source, (description, docs) in sources(args.sources.split(","), corpus).items():
    print(f"\n== {source}: {description}: {len(docs)} documents, "
          f"{sum(map(len, docs.values()))} bytes ==")
    for size in sizes:
      recs = records(docs, size, args.records)
      if not recs:
        print(f"  no {size}-byte records")
        continue
      if size not in dictionaries:
        start = time.perf_counter()
        dictionaries[size] = baselines.zstd_dictionary(training_records(corpus, size))
        print(f"  [zstd dictionary for {size}-byte records: "
              f"{len(dictionaries[size].as_bytes())} bytes, {time.perf_counter() - start:.1f} s]")
      raw = len(recs) * size
      sizes_ardm, enc, dec = ardm_records(coder, recs, budget)
      rows = [("ARDM (lean stream)", sum(sizes_ardm), enc, dec)]
      results = {}
      for codec in CLASSIC:
        if baselines.codec_available(codec):
          got, e, d = classic(recs, codec)
          results[codec] = sum(got)
          rows.append((codec + (f" {ZSTD_LEVEL}" if codec == "zstd" else ""), sum(got), e, None))
      got, e, d = classic(recs, "zstd", dictionaries[size])
      results["zstd_dict"] = sum(got)
      rows.append((f"zstd {ZSTD_LEVEL} + trained dictionary", sum(got), e, d))
      print_table(f"\n  {len(recs)} records of {size} bytes, each its own stream", rows, raw,
                  sum(sizes_ardm))
      if size == BAR_SIZE and "brotli" in results:
        ok = (sum(sizes_ardm) <= BROTLI_BAR * results["brotli"]
              and sum(sizes_ardm) <= results["zstd_dict"])
        verdicts.append(f"{source}, {size}-byte records: ARDM / brotli = "
                        f"{sum(sizes_ardm) / results['brotli']:.3f} (bar <= {BROTLI_BAR}), "
                        f"ARDM / zstd+dictionary = {sum(sizes_ardm) / results['zstd_dict']:.3f} "
                        f"(bar <= 1): {'meets' if ok else 'misses'} the bar")
    if args.files:
      whole_files(coder, docs, args, budget, dictionaries.get(max(sizes)))
  print("\n" + "\n".join(verdicts))


def whole_files(coder, docs, args, budget, dictionary):
  """Prints the whole-file table of one source: its first --files documents in
  name order that fit in --file_bytes. dictionary: the zstd dictionary of the
  largest record size, or None."""
  files, total = {}, 0
  for name, data in sorted(docs.items()):
    if len(files) < args.files and total + len(data) <= args.file_bytes:
      files[name], total = data, total + len(data)
  if not files:
    print(f"\n  whole files: none fits in --file_bytes={args.file_bytes}")
    return
  start = time.perf_counter()
  ardm = sum(ardm_file(coder, data, budget) for data in files.values())
  rows = [("ARDM (.ardm file)", ardm, time.perf_counter() - start, None)]
  for codec in CLASSIC:
    if baselines.codec_available(codec):
      rows.append((codec + (f" {ZSTD_LEVEL}" if codec == "zstd" else ""),
                   sum(len(baselines.compress(d, codec, zstd_level=ZSTD_LEVEL))
                       for d in files.values()), None, None))
  if dictionary is not None:
    encode, _ = baselines.zstd_dictionary_coder(dictionary, ZSTD_LEVEL)
    size = max(int(s) for s in args.sizes.split(","))
    rows.append((f"zstd {ZSTD_LEVEL} + dictionary ({size} B)",
                 sum(len(encode(d)) for d in files.values()), None, None))
  print_table(f"\n  whole files: {len(files)} documents, {total} bytes, each one file "
              "(ARDM time: encode and decode together)", rows, total, ardm)


if __name__ == "__main__":
  try:
    main()
  except UserError as e:
    sys.exit(f"error: {e}")
