r"""Decompresses .ardm files made by tf_ardm.compress.

  python -m tf_ardm.decompress --model=DIR [-v] IN OUT

DIR must hold the model that compressed the files (a codec export or the
trained model directory); another model, or a corrupted, truncated or
extended file, gives a one-line error and never wrong data. IN is an .ardm
file, or a directory whose .ardm files are decompressed into the new
directory OUT under their names without `.ardm` (other files are skipped).
Nothing is written on an error; the input is never modified.

-v prints per file the bytes and bits/dim, the model's exact code length
under the same order and policy and the network calls.
"""
import os

import numpy as np

from tf_ardm.cli import app
from tf_ardm.cli import flags
from tf_ardm.coding import coder as coder_lib
from tf_ardm.coding import container
from tf_ardm.coding import stream
from tf_ardm.errors import UserError

FLAGS = flags.FLAGS


def decompress_all(coder, files):
  """Datapoints int32 [N_i, *shape] and stream headers per file.

  files: [(name, Original, fingerprint, streams)] (lean streams). Files of
  one single-datapoint stream share batched calls.
  """
  headers = []
  for name, original, fingerprint, streams in files:
    container.check_model(fingerprint, coder.fingerprint, name)
    try:
      header = [stream.read_header(s, coder.fingerprint, lean=True) for s in streams]
    except UserError as e:
      raise UserError(f"{name}: {e}") from None
    container.check_count(original, coder.config, sum(h.count for h in header), name)
    headers.append(header)
  out = [None] * len(files)
  singles = [i for i, h in enumerate(headers) if len(h) == 1 and h[0].count == 1]
  if singles:
    x = coder.decompress_each([files[i][3][0] for i in singles],
                              names=[files[i][0] for i in singles], lean=True)
    for j, i in enumerate(singles):
      out[i] = x[j:j + 1]
  for i, (name, _, _, streams) in enumerate(files):
    if out[i] is None:
      parts = []
      for data in streams:
        try:
          parts.append(coder.decompress(data, lean=True))
        except UserError as e:
          raise UserError(f"{name}: {e}") from None
      out[i] = np.concatenate(parts) if parts else np.zeros([0, *coder.shape], np.int32)
  return out, headers


def main(argv):
  if len(argv) != 3:
    raise UserError("usage: python -m tf_ardm.decompress --model=DIR [-v] IN OUT")
  in_path, out_path = argv[1:]
  app.configure_codec_process()
  jobs = container.plan(in_path, out_path, lambda rel: rel[:-len(".ardm")],
                        select=lambda rel: rel.endswith(".ardm"),
                        overwrite=FLAGS.overwrite)
  files = []
  for src, _ in jobs:
    with open(src, "rb") as f:
      files.append((src, *container.unpack(f.read(), src)))
  coder = coder_lib.load(flags.model_path())
  data, headers = decompress_all(coder, files)
  outputs = {rel: container.rebuild(x, original, coder.config, src)
             for (src, rel), (_, original, _, _), x in zip(jobs, files, data)}
  container.commit(outputs, out_path)
  if FLAGS.verbose:
    for (name, original, _, streams), x, header in zip(files, data, headers):
      budget = header[0].budget if header else 1
      stored = original.kind == container.STORED
      print(container.describe(
          name, int(np.prod(original.shape)), os.path.getsize(name),
          None if stored else sum(map(len, streams)),
          None if stored else coder.exact_bits(x, budget).sum(), budget, coder.num_stages,
          stored=stored))
    print(f"total: {len(jobs)} file(s), {coder.calls} network calls "
          f"(batches of up to {coder.max_batch})")


def run():
  app.run(main, "decompress")
