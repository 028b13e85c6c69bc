"""Forward + backward time of normlab's convolution and max pooling against PyTorch CPU.

Run:  python benchmarks/bench_conv.py [--threads 2] [--rounds 21] [--inner 3] [--only conv|pool]

For each case (the layers of the Fashion-MNIST and CIFAR-10 ConvNets of issue 11: 3x3 and 5x5
filters, stride 1 and 2, 1-64 channels, batch 32-128; float32): one forward + one backward in
normlab and in PyTorch (``y.backward(dy)`` through autograd), timed in interleaved rounds in
the same process (``_steps.interleaved``) -- each round runs normlab ``--inner`` times and
PyTorch ``--inner`` times, the order alternating from round to round, so that load from other
processes hits both alike. Printed: the median time per call of each, and the median over
rounds of the per-round ratio normlab / PyTorch with its interquartile range (the spread to
judge a difference by).

Conv rows also time, in the same rounds and always right after normlab's layer, the layer's
three matrix products alone (``_steps.im2col_gemms``: the forward, dw and dcols GEMMs on the
layer's own operands), and print their median time (GEMMs ms) and the median per-round ratio
GEMMs / PyTorch with its IQR: what an im2col layer with these GEMM orientations would reach if
im2col, col2im, the layout copies, the bias and the ``db`` product cost nothing.

BLAS and numba threads (NumPy) and intra-op threads (PyTorch) are all ``--threads``, and
glibc's malloc thresholds are pinned for both (``_common.setup``). Not a test: nothing here
asserts a time.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import machine_line, setup
from _steps import CONV_CASES, conv_case, im2col_gemms, interleaved, normlab_conv, torch_conv

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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--inner", type=int, default=3, help="calls per round and library")
    ap.add_argument("--only", choices=["conv", "pool"], default=None)
    args = ap.parse_args(argv)

    import torch

    setup(args.threads)
    rng = np.random.default_rng(0)
    print(f"# {machine_line(args.threads)}")
    calls = f"{args.inner} call{'s' if args.inner != 1 else ''}"
    print(f"# float32, forward + backward, {args.rounds} interleaved rounds of {calls} each")
    print("# ratio: median over the rounds of normlab / torch in the round, IQR its spread")
    if args.only != "pool":
        print("# GEMMs: the conv layer's three matrix products alone (_steps.im2col_gemms)")
    print(
        f"{'layer':<9} {'x':<18} {'w / pool':<17} {'normlab ms':>10} {'torch ms':>9} "
        f"{'ratio':>6}  {'ratio IQR':<9}"
        + ("" if args.only == "pool" else f"  {'GEMMs ms':>8} {'GEMMs/torch':>11}  IQR")
    )
    cases = []
    if args.only != "pool":
        cases += [("conv", xs, str(ws) + f" s{s}", (ws, s, p)) for xs, ws, s, p in CONV_CASES]
    if args.only != "conv":
        cases += [("max_pool", xs, f"{k}x{k}/{s}", (k, s)) for xs, k, s in POOL_CASES]
    for kind, xs, what, geo in cases:
        if kind == "conv":
            ws, s, p = geo
            x, w, b, dy = conv_case(rng, xs, ws, s, p)
            ours = normlab_conv(x, w, b, dy, s, p)
            theirs = torch_conv(torch, x, w, b, dy, s, p)
            groups = [(ours, im2col_gemms(x, w, b, dy, s, p)), (theirs,)]
        else:
            x = rng.standard_normal(xs, dtype=np.float32)
            ours, theirs = _pool_steps(torch, x, *geo, rng)
            groups = [(ours,), (theirs,)]
        a, *g, t = interleaved(groups, args.rounds, args.inner)
        q1, med, q3 = np.percentile(a / t, [25, 50, 75])
        row = (
            f"{kind:<9} {str(xs):<18} {what:<17} {np.median(a) * 1e3:10.2f} "
            f"{np.median(t) * 1e3:9.2f} {med:6.2f}  {q1:.2f}-{q3:.2f}"
        )
        if g:
            g1, gmed, g3 = np.percentile(g[0] / t, [25, 50, 75])
            row += f"  {np.median(g[0]) * 1e3:8.2f} {gmed:11.2f}  {g1:.2f}-{g3:.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
