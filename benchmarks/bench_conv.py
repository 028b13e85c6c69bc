"""Forward + backward time of normlab's convolution and max pooling against PyTorch CPU.

Run:  python benchmarks/bench_conv.py [--threads 2] [--rounds 21] [--inner 3] [--only conv|pool]

For each case (the layers of the Fashion-MNIST and CIFAR-10 ConvNets of issue 11: 3x3 and 5x5
filters, stride 1 and 2, 1-64 channels, batch 32-128; float32): one forward + one backward in
normlab and in PyTorch (``y.backward(dy)`` through autograd), timed in interleaved rounds in
the same process -- each round runs normlab ``--inner`` times then PyTorch ``--inner`` times
(the order alternating from round to round), so that load from other processes hits both
alike. Printed: the median time per call of each, and the median over rounds of the per-round
ratio normlab / PyTorch with its interquartile range (the spread to judge a difference by).
Conv rows also time, in the same rounds and always right after normlab's layer, its three
matrix products alone (``_steps.im2col_gemms``: forward, dw and dcols GEMMs on the layer's
operand shapes) and print
GEMMs / PyTorch: the ratio the im2col method would reach if its copies (im2col, col2im, the
layout moves) cost nothing.
BLAS and numba threads (NumPy) and intra-op threads (PyTorch) are all ``--threads``, and
glibc's malloc thresholds are pinned for both (``_common.setup``). Not a test: nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import machine_line, setup
from _steps import CONV_CASES, conv_case, im2col_gemms, normlab_conv, torch_conv

POOL_CASES = [  # (x shape, pool size, stride)
    ((64, 32, 28, 28), 2, 2),  # after Fashion-MNIST conv1
    ((64, 64, 14, 14), 2, 2),  # after Fashion-MNIST conv2
    ((128, 32, 32, 32), 2, 2),  # after CIFAR-10 conv1
    ((64, 16, 28, 28), 3, 2),  # overlapping windows
]


def _pool_steps(torch, x, k, stride, rng):
    """(normlab step, torch step) of a k x k max pool."""
    from normlab.layers.conv import max_pool_backward, max_pool_forward

    F = torch.nn.functional
    param = {"pool_height": k, "pool_width": k, "stride": stride}
    dy = rng.standard_normal(max_pool_forward(x, param)[0].shape, dtype=np.float32)
    xt, dyt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(dy)

    def ours():
        max_pool_backward(dy, max_pool_forward(x, param)[1])

    def theirs():
        xt.grad = None
        F.max_pool2d(xt, k, stride).backward(dyt)

    return ours, theirs


def interleaved(groups, rounds: int, inner: int):
    """Per-call seconds of each function, per round: arrays (rounds,), in the order of the
    functions in ``groups`` (a list of tuples of functions).

    Each round runs every group once, the order of the groups rotating by one from round to
    round; a group runs its functions in its own order, each ``inner`` times. Functions in one
    group always follow each other: a bare GEMM started right after PyTorch's block competes
    with PyTorch's spin-waiting OpenMP threads (``im2col_gemms`` of (64, 16, 14, 14): 2.95 ms
    after normlab's layer, 5.43 ms when it also followed PyTorch), while normlab's layer starts
    with single-threaded copies that outlast the spin.
    """
    fns = [fn for group in groups for fn in group]
    for fn in fns * 2:  # compile, first-touch allocation
        fn()
    times = {fn: [] for fn in fns}
    for r in range(rounds):
        for k in range(len(groups)):
            for fn in groups[(k + r) % len(groups)]:
                t0 = time.perf_counter()
                for _ in range(inner):
                    fn()
                times[fn].append((time.perf_counter() - t0) / inner)
    return [np.array(times[fn]) for fn in fns]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--inner", type=int, default=3, help="calls per round and library")
    ap.add_argument("--only", choices=["conv", "pool"], default=None)
    args = ap.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    setup(args.threads)
    rng = np.random.default_rng(0)
    print(f"# {machine_line(args.threads)}")
    print(f"# float32, forward + backward, {args.rounds} interleaved rounds of {args.inner} calls")
    print(
        f"{'layer':<9} {'x':<18} {'w / pool':<16} {'normlab ms':>10} {'torch ms':>9} "
        f"{'ratio':>6}  {'ratio IQR':<9}  {'GEMMs ms':>8} {'GEMMs/torch':>11}"
    )
    cases = []
    if args.only != "pool":
        cases += [("conv", xs, str(ws) + f" s{s}", (ws, s, p)) for xs, ws, s, p in CONV_CASES]
    if args.only != "conv":
        cases += [("max_pool", xs, f"{k}x{k}/{s}", (k, s)) for xs, k, s in POOL_CASES]
    with threadpool_limits(args.threads, user_api="blas"):
        for kind, xs, what, geo in cases:
            if kind == "conv":
                ws, s, p = geo
                x, w, b, dy = conv_case(rng, xs, ws, s, p)
                ours = normlab_conv(x, w, b, dy, s, p)
                groups = [(ours, im2col_gemms(x, w, dy)), (torch_conv(torch, x, w, b, dy, s, p),)]
            else:
                x = rng.standard_normal(xs, dtype=np.float32)
                ours, theirs = _pool_steps(torch, x, *geo, rng)
                groups = [(ours,), (theirs,)]
            a, *g, t = interleaved(groups, args.rounds, args.inner)
            q1, med, q3 = np.percentile(a / t, [25, 50, 75])
            floor = f"{np.median(g[0]) * 1e3:8.2f} {np.median(g[0] / t):11.2f}" if g else ""
            print(
                f"{kind:<9} {str(xs):<18} {what:<16} {np.median(a) * 1e3:10.2f} "
                f"{np.median(t) * 1e3:9.2f} {med:6.2f}  {f'{q1:.2f}-{q3:.2f}':<9}  {floor}",
                flush=True,
            )


if __name__ == "__main__":
    main()
