"""Time of one ConvNet training step (forward, backward, Adam) in normlab and in PyTorch CPU.

Run:  python benchmarks/bench_convnet_step.py [--norm batchnorm|none] [--input 1,28,28]
                                             [--batch 64] [--threads 2] [--rounds 15] [--inner 4]

The network of ``bench_fashion.py``'s ``conv`` model: conv(32)-norm-ReLU-pool-conv(64)-norm-
ReLU-pool-fc(128)-norm-ReLU-fc, 3x3 filters with padding 1, 2x2 max pools, float32; normlab's
``ConvNet.loss`` and an ``Optimizer('adam')`` step against ``torch.nn.Sequential`` and
``torch.optim.Adam(fused=True)``. Both see the same batches (seeded random images and labels:
the time of a step does not depend on the pixel values). Timed in interleaved rounds in one
process, as in ``bench_conv.py``: each round runs ``--inner`` steps of one library then of the
other, the order alternating; printed are the median step times and the median over rounds of
the per-round ratio normlab / PyTorch with its interquartile range. Not a test.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import machine_line, setup
from bench_conv import interleaved


def _torch_net(torch, C, H, W, norm):
    nn = torch.nn
    bn2, bn1 = (nn.BatchNorm2d, nn.BatchNorm1d) if norm else (lambda c: nn.Identity(),) * 2
    return nn.Sequential(
        nn.Conv2d(C, 32, 3, padding=1),
        bn2(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        bn2(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (H // 4) * (W // 4), 128),
        bn1(128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


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
    from threadpoolctl import threadpool_limits

    from normlab.models import ConvNet
    from normlab.optimizer import Optimizer

    setup(args.threads)
    C, H, W = (int(v) for v in args.input.split(","))
    norm = None if args.norm == "none" else args.norm
    rng = np.random.default_rng(0)
    batches = [
        (rng.random((args.batch, C, H, W), dtype=np.float32), rng.integers(0, 10, args.batch))
        for _ in range(8)
    ]
    model = ConvNet(
        (C, H, W),
        num_filters=(32, 64),
        filter_size=3,
        hidden_dims=(128,),
        normalization=norm,
        seed=0,
    )
    opt = Optimizer(model.params, "adam", {"learning_rate": 1e-3})
    torch.manual_seed(0)
    net = _torch_net(torch, C, H, W, norm)
    topt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    tbatches = [(torch.from_numpy(X), torch.from_numpy(y)) for X, y in batches]
    it = {"ours": 0, "theirs": 0}

    def ours():
        X, y = batches[it["ours"] % len(batches)]
        it["ours"] += 1
        _, grads = model.loss(X, y)
        opt.step(model.params, grads)

    def theirs():
        X, y = tbatches[it["theirs"] % len(tbatches)]
        it["theirs"] += 1
        topt.zero_grad(set_to_none=True)
        loss_fn(net(X), y).backward()
        topt.step()

    print(f"# {machine_line(args.threads)}")
    print(
        f"# ConvNet {args.input} norm={args.norm} batch {args.batch}, Adam, float32, "
        f"{args.rounds} interleaved rounds of {args.inner} steps"
    )
    with threadpool_limits(args.threads, user_api="blas"):
        a, t = interleaved(ours, theirs, args.rounds, args.inner)
    q1, med, q3 = np.percentile(a / t, [25, 50, 75])
    print(
        f"step  normlab {np.median(a) * 1e3:.2f} ms  torch {np.median(t) * 1e3:.2f} ms  "
        f"ratio {med:.2f} (IQR {q1:.2f}-{q3:.2f})"
    )


if __name__ == "__main__":
    main()
