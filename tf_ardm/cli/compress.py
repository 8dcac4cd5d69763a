r"""Compresses files losslessly with a trained ARDM.

  python -m tf_ardm.compress --model=DIR [--budget=K] [-v] IN OUT

DIR is a codec export (tf_ardm.coding.codec.export), an export root holding
one in codec/, or a trained model directory (<workdir>/model), from which
the codec is built in memory. IN is a file, or a directory whose files are compressed one by one
into the new directory OUT under mirrored names plus `.ardm`. Images (PNG,
NPY) of any size are tiled into model-sized patches and text of any length is
cut into model-sized chunks; see tf_ardm.coding.container for the accepted inputs
and the file layout. Every file is one solid stream (one header for all its
datapoints), in the lean framing: the file states the model's fingerprint
and arithmetic once. The streams are exact integer arithmetic, so a file
decodes on any machine and TF build with the same model. Nothing is written
on an error; the input is never modified.

-v prints per file the bytes and bits/dim, the model's exact code length
under the same order and policy (-log2 p(x | sigma, policy)) and the network
calls.
"""
import numpy as np

from tf_ardm.cli import app
from tf_ardm.cli import flags
from tf_ardm.coding import coder as coder_lib
from tf_ardm.coding import container
from tf_ardm.errors import UserError

FLAGS = flags.FLAGS


def compress_all(coder, sources, budget):
  """ARDM streams per source (datapoints [N_i, *shape]): a list per source.

  Sources of one datapoint share batched calls; others get solid streams.
  """
  streams = [None] * len(sources)
  singles = [i for i, x in enumerate(sources) if len(x) == 1]
  if singles:
    batch = np.concatenate([sources[i] for i in singles])
    for i, data in zip(singles, coder.compress_each(batch, budget, lean=True)):
      streams[i] = [data]
  for i, x in enumerate(sources):
    if streams[i] is None:
      streams[i] = [coder.compress(x[part], budget, lean=True)
                    for part in coder.parts(len(x))]
  return streams


def main(argv):
  if len(argv) != 3:
    raise UserError("usage: python -m tf_ardm.compress --model=DIR [--budget=K] "
                        "[-v] IN OUT")
  in_path, out_path = argv[1:]
  app.configure_codec_process()
  jobs = container.plan(in_path, out_path, lambda rel: rel + ".ardm",
                        overwrite=FLAGS.overwrite)
  coder = coder_lib.load(flags.model_path())
  budget = coder.check_budget(FLAGS.budget or min(coder.num_steps, 100))
  inputs = [container.read(src, coder.config, FLAGS.normalize) for src, _ in jobs]
  streams = compress_all(coder, [x for x, _ in inputs], budget)
  outputs = {rel: container.pack(original, s, coder.fingerprint, coder.arithmetic)
             for (_, rel), (_, original), s in zip(jobs, inputs, streams)}
  container.commit(outputs, out_path)
  if FLAGS.verbose:
    for (src, rel), (x, original), s in zip(jobs, inputs, streams):
      exact = coder.exact_bits(x, budget).sum()
      print(container.describe(src, int(np.prod(original.shape)), len(outputs[rel]),
                               sum(map(len, s)), exact, budget, coder.num_stages,
                               stored=container.is_stored(outputs[rel])))
    print(f"total: {len(jobs)} file(s), {sum(map(len, outputs.values()))} bytes, "
          f"{coder.calls} network calls (budget {budget}, batches of up to "
          f"{coder.max_batch})")


def run():
  app.run(main, "compress")
