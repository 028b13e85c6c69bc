"""Time of one ConvNet training step (forward, backward, Adam) in normlab and in PyTorch CPU.

Run:  python benchmarks/bench_convnet_step.py [--norm batchnorm|none] [--input 1,28,28]
                                             [--batch 64] [--threads 2] [--rounds 15] [--inner 4]

The network of ``bench_fashion.py``'s ``conv`` model: conv(32)-norm-ReLU-pool-conv(64)-norm-
ReLU-pool-fc(128)-norm-ReLU-fc, 3x3 filters with padding 1, 2x2 max pools, float32; normlab's
``ConvNet.loss`` and an ``Optimizer('adam')`` step against ``torch.nn.Sequential`` and
``torch.optim.Adam(fused=True)``. Both see the same batches (seeded random images and labels:
the time of a step does not depend on the pixel values). Timed in interleaved rounds in one
process (``_steps.interleaved``), as in ``bench_conv.py``: each round runs ``--inner`` steps of
one library then of the other, the order alternating; printed are the median step times and the
median over rounds of the per-round ratio normlab / PyTorch with its interquartile
range. Not a test.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import machine_line, setup
from _steps import batches, interleaved, normlab_convnet, torch_convnet


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--norm", choices=["batchnorm", "none"], default="batchnorm")
    ap.add_argument("--input", default="1,28,28", help="C,H,W (default 1,28,28; CIFAR 3,32,32)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--inner", type=int, default=4, help="steps per round and library")
    args = ap.parse_args(argv)

    import torch

    setup(args.threads)
    C, H, W = (int(v) for v in args.input.split(","))
    norm = None if args.norm == "none" else args.norm
    data = batches(np.random.default_rng(0), args.batch, C, H, W)
    ours = normlab_convnet(data, C, H, W, norm)
    theirs = torch_convnet(torch, data, C, H, W, norm)

    print(f"# {machine_line(args.threads)}")
    print(
        f"# ConvNet {args.input} norm={args.norm} batch {args.batch}, Adam, float32, "
        f"{args.rounds} interleaved rounds of {args.inner} steps"
    )
    a, t = interleaved([(ours,), (theirs,)], args.rounds, args.inner)
    q1, med, q3 = np.percentile(a / t, [25, 50, 75])
    print(
        f"step  normlab {np.median(a) * 1e3:.2f} ms  torch {np.median(t) * 1e3:.2f} ms  "
        f"ratio {med:.2f} (IQR {q1:.2f}-{q3:.2f})"
    )


if __name__ == "__main__":
    main()
