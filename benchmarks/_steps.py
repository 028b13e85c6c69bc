"""The timed work of the convolution benchmarks, one builder per library; the timers; the CPU.

Each builder returns a function doing one forward + backward (a conv layer) or one training
step (the ConvNet), on data made from ``rng`` alone, so that normlab's and PyTorch's see the
same numbers. normlab's builders never import torch: ``bench_alone.py`` runs each library in a
process of its own. PyTorch is passed in by the caller, already imported.
"""

from __future__ import annotations

import platform
import statistics
import time

import numpy as np

# The conv layers of issue 11's ConvNets: 3x3 and 5x5 filters, stride 1 and 2, 1-64 channels,
# batch 32-128.
CONV_CASES = [  # (x shape, w shape, stride, pad)
    ((64, 1, 28, 28), (32, 1, 3, 3), 1, 1),  # Fashion-MNIST conv1
    ((64, 32, 14, 14), (64, 32, 3, 3), 1, 1),  # Fashion-MNIST conv2
    ((64, 16, 14, 14), (32, 16, 3, 3), 1, 1),
    ((64, 32, 7, 7), (64, 32, 3, 3), 1, 1),
    ((64, 16, 28, 28), (32, 16, 3, 3), 2, 1),  # stride 2
    ((128, 3, 32, 32), (32, 3, 5, 5), 1, 2),  # CIFAR-10 conv1, 5x5
    ((128, 32, 16, 16), (64, 32, 3, 3), 1, 1),  # CIFAR-10 conv2
    ((32, 64, 8, 8), (64, 64, 3, 3), 1, 1),  # batch 32, 64 channels
    ((32, 32, 16, 16), (64, 32, 5, 5), 2, 2),  # 5x5, stride 2
]


def normlab_conv(x, w, b, dy, stride, pad):
    """One normlab conv forward + backward."""
    from normlab.layers.conv import conv_backward, conv_forward

    param = {"stride": stride, "pad": pad}

    def step():
        conv_backward(dy, conv_forward(x, w, b, param)[1])

    return step


def im2col_gemms(x, w, b, dy, stride, pad):
    """The three matrix products of normlab's conv layer on one case, and nothing else.

    ``w2 @ cols`` (forward), ``cols @ dg2.T`` (dw) and ``w2.T @ dg2`` (dcols), written as
    :mod:`normlab.layers.conv` writes them, on the layer's own operands: ``cols`` from its
    forward's cache, ``dg2`` the upstream gradient on the (F, N*H'*W') grid as its backward
    builds it. Left out: im2col, col2im, the padding and layout copies, the bias and the ``db``
    matrix-vector product. The time of an im2col layer with these GEMM orientations on this BLAS
    if everything else cost nothing.
    """
    from normlab.layers.conv import conv_forward

    cols = conv_forward(x, w, b, {"stride": stride, "pad": pad})[1][0]  # (C*HH*WW, N*H'*W')
    F, M = w.shape[0], cols.shape[1]
    w2 = w.reshape(F, -1)  # (F, C*HH*WW)
    dg2 = np.ascontiguousarray(dy.transpose(1, 0, 2, 3), w.dtype).reshape(F, M)  # (F, N*H'*W')

    def step():
        w2 @ cols
        cols @ dg2.T
        w2.T @ dg2

    return step


def interleaved(groups, rounds: int, inner: int):
    """Per-call seconds of each function of ``groups`` (a list of tuples of functions), per
    round: arrays (rounds,), in the order of the functions in ``groups``.

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
    times = [[] for _ in fns]
    starts = np.cumsum([0] + [len(group) for group in groups])  # first index of each group
    for r in range(rounds):
        for k in range(len(groups)):
            g = (k + r) % len(groups)
            for i in range(starts[g], starts[g + 1]):
                t0 = time.perf_counter()
                for _ in range(inner):
                    fns[i]()
                times[i].append((time.perf_counter() - t0) / inner)
    return [np.array(t) for t in times]


def torch_conv(torch, x, w, b, dy, stride, pad):
    """One PyTorch conv2d forward + backward through autograd."""
    xt, wt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
    dyt = torch.from_numpy(dy)

    def step():
        xt.grad = wt.grad = bt.grad = None
        torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=pad).backward(dyt)

    return step


def conv_case(rng, xs, ws, stride, pad):
    """(x, w, b, dy) of one conv case: dy has the output's shape."""
    H, W = xs[2] + 2 * pad, xs[3] + 2 * pad
    out = (xs[0], ws[0], 1 + (H - ws[2]) // stride, 1 + (W - ws[3]) // stride)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    b = rng.standard_normal(ws[0], dtype=np.float32)
    return x, w, b, rng.standard_normal(out, dtype=np.float32)


def batches(rng, batch, C, H, W, count=8):
    """``count`` batches of random images in [0, 1) and labels 0-9."""
    return [
        (rng.random((batch, C, H, W), dtype=np.float32), rng.integers(0, 10, batch))
        for _ in range(count)
    ]


def normlab_convnet(data, C, H, W, norm):
    """One training step of normlab's ConvNet (conv32-norm-ReLU-pool-conv64-norm-ReLU-pool-
    fc128-norm-ReLU-fc, 3x3 filters, Adam), cycling through ``data``."""
    from normlab.models import ConvNet
    from normlab.optimizer import Optimizer

    model = ConvNet(
        (C, H, W),
        num_filters=(32, 64),
        filter_size=3,
        hidden_dims=(128,),
        normalization=norm,
        seed=0,
    )
    opt = Optimizer(model.params, "adam", {"learning_rate": 1e-3})
    it = iter(range(1 << 62))

    def step():
        X, y = data[next(it) % len(data)]
        _, grads = model.loss(X, y)
        opt.step(model.params, grads)

    return step


def torch_convnet(torch, data, C, H, W, norm):
    """The same network and step in PyTorch (``Adam(fused=True)``)."""
    nn = torch.nn
    bn2, bn1 = (nn.BatchNorm2d, nn.BatchNorm1d) if norm else (lambda c: nn.Identity(),) * 2
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(C, 32, 3, padding=1), bn2(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), bn2(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (H // 4) * (W // 4), 128), bn1(128), nn.ReLU(),
        nn.Linear(128, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    tdata = [(torch.from_numpy(X), torch.from_numpy(y)) for X, y in data]
    it = iter(range(1 << 62))

    def step():
        X, y = tdata[next(it) % len(tdata)]
        opt.zero_grad(set_to_none=True)
        loss_fn(net(X), y).backward()
        opt.step()

    return step


def median_seconds(fn, repeat: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls, after ``warmup`` untimed ones (JIT
    compilation, first-touch allocation)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
