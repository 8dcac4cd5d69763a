r"""Sustained codec load: many round trips in one process, memory and exactness.

  .venv/bin/python benchmarks/codec_soak.py --model=savedmodels/digits/codec \
      [--num=10000] [--budget=8] [--chunk=100]

Compresses and decompresses `--num` digits in one process, `--chunk` at a
time, alternating between one stream per datapoint (compress_each) and one
solid stream per chunk (compress). The data cycle through the 1797 digits,
rotated by a further 90 degrees and mirrored on every pass, so that repeated
passes code new datapoints. Prints the resident set size (RSS) after loading,
after the first and the last 1,000 round trips and its growth between them,
the throughput, and the round trips whose decoded data differ from the
input (must be 0).
"""
import argparse
import time

import numpy as np

WINDOW = 1000  # Round trips per RSS sample.


def rss_mib():
  """The resident set size of this process, MiB (Linux /proc)."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  raise RuntimeError("no VmRSS in /proc/self/status")


def datapoints(num):
  """int32 [num, 8, 8, 1]: the digits, transformed anew on every pass."""
  from tf_ardm.data import datasets  # pylint: disable=g-import-not-at-top
  data = datasets.load("digits").splits
  base = np.concatenate([data["train"], data["test"]])
  passes = []
  for p in range(-(-num // len(base))):
    x = np.rot90(base, k=p % 4, axes=(1, 2))
    passes.append(x[:, :, ::-1] if (p // 4) % 2 else x)
  return np.ascontiguousarray(np.concatenate(passes)[:num])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", required=True, help="codec export (or trained model)")
  parser.add_argument("--num", type=int, default=10000, help="round trips")
  parser.add_argument("--budget", type=int, default=8, help="network calls per datapoint")
  parser.add_argument("--chunk", type=int, default=100, help="datapoints per call")
  args = parser.parse_args()
  if args.num < 2 * WINDOW or args.num % WINDOW or args.chunk < 1 or WINDOW % args.chunk:
    parser.error(f"--num must be a multiple of {WINDOW} from {2 * WINDOW} and --chunk "
                 f"must divide {WINDOW}")
  from tf_ardm.coding import coder as coder_lib  # pylint: disable=g-import-not-at-top

  x = datapoints(args.num)
  coder = coder_lib.load(args.model)
  rss = {"after loading": rss_mib()}
  windows, mismatches, stream_bytes, done = [], 0, 0, 0
  start = window_start = time.perf_counter()
  for i, lo in enumerate(range(0, args.num, args.chunk)):
    part = x[lo:lo + args.chunk]
    if i % 2:
      streams = [coder.compress(part, args.budget)]
      y = coder.decompress(streams[0])
    else:
      streams = coder.compress_each(part, args.budget)
      y = coder.decompress_each(streams)
    mismatches += int(np.sum(np.any((y != part).reshape(len(part), -1), axis=1)))
    stream_bytes += sum(map(len, streams))
    done += len(part)
    if done % WINDOW == 0:
      now = time.perf_counter()
      windows.append((done, rss_mib(), WINDOW / (now - window_start)))
      window_start = now
  elapsed = time.perf_counter() - start
  first, last = windows[0][1], windows[-1][1]
  print(f"{done} round trips of 8x8 digits at budget {args.budget}, chunks of {args.chunk} "
        f"(per-datapoint and solid streams alternately), one process")
  print(f"{'round trips':>11}  {'RSS MiB':>8}  {'round trips/s':>13}")
  print(f"{0:>11}  {rss['after loading']:>8.1f}  {'':>13}")
  for n, mib, rate in windows:
    print(f"{n:>11}  {mib:>8.1f}  {rate:>13.1f}")
  print(f"RSS: {rss['after loading']:.1f} MiB after loading, {first:.1f} after the first "
        f"{WINDOW}, {last:.1f} after the last {WINDOW}: growth {100 * (last - first) / first:+.2f}%")
  print(f"throughput: {done / elapsed:.1f} round trips/s ({elapsed:.0f} s), "
        f"{8 * stream_bytes / x.size:.3f} bits/dim coded")
  print(f"mismatches: {mismatches} of {done}")


if __name__ == "__main__":
  main()
