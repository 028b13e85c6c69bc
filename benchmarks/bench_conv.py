"""Forward + backward time of normlab's convolution and max pooling against PyTorch CPU.

Run:  python benchmarks/bench_conv.py [--threads 2] [--repeat 50] [--tune-malloc]

For each case (the layers of a small ConvNet on 28x28 Fashion-MNIST, batch 64): the minimum
and median time of one forward + one backward in float32 for normlab and for PyTorch
(``y.backward(dy)`` through autograd), timed alternately in the same loop so that load from
other processes hits both alike, with the ratio normlab / PyTorch of the minima. BLAS threads
(NumPy) and intra-op threads (PyTorch) are both limited to ``--threads``.

``--tune-malloc`` raises glibc's mmap and trim thresholds first (Linux only): by default every
multi-megabyte temporary is returned to the OS when freed and page-faulted back in on the next
call, which can double the time of a layer whose arrays are a few MB. Not a test: nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import time

import numpy as np


def _cases():
    from normlab.layers.conv import conv_backward, conv_forward, max_pool_backward, max_pool_forward

    conv = ("conv", conv_forward, conv_backward)
    pool = ("max_pool", max_pool_forward, max_pool_backward)
    return [
        (conv, (64, 1, 28, 28), (16, 1, 3, 3), {"stride": 1, "pad": 1}),
        (conv, (64, 16, 14, 14), (32, 16, 3, 3), {"stride": 1, "pad": 1}),
        (conv, (64, 32, 7, 7), (64, 32, 3, 3), {"stride": 1, "pad": 1}),
        (conv, (64, 16, 28, 28), (32, 16, 3, 3), {"stride": 2, "pad": 1}),
        (pool, (64, 16, 28, 28), None, {"pool_height": 2, "pool_width": 2, "stride": 2}),
        (pool, (64, 32, 14, 14), None, {"pool_height": 2, "pool_width": 2, "stride": 2}),
        (pool, (64, 16, 28, 28), None, {"pool_height": 3, "pool_width": 3, "stride": 2}),
    ]


def _tune_malloc():
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    libc.mallopt(m_mmap_threshold, 1 << 28)
    libc.mallopt(m_trim_threshold, 1 << 30)


def _steps(torch, kind, fwd, bwd, x, w, param, rng):
    """(normlab step, torch step) closures doing one forward + backward each."""
    F = torch.nn.functional
    xt = torch.from_numpy(x).requires_grad_(True)
    if kind == "conv":
        b = rng.standard_normal(w.shape[0], dtype=np.float32)
        out, _ = fwd(x, w, b, param)
        wt, bt = torch.from_numpy(w).requires_grad_(True), torch.from_numpy(b).requires_grad_(True)
        s, p = param["stride"], param["pad"]

        def ours():
            bwd(dy, fwd(x, w, b, param)[1])

        def theirs():
            xt.grad = wt.grad = bt.grad = None
            F.conv2d(xt, wt, bt, stride=s, padding=p).backward(dyt)
    else:
        out, _ = fwd(x, param)
        k, s = (param["pool_height"], param["pool_width"]), param["stride"]

        def ours():
            bwd(dy, fwd(x, param)[1])

        def theirs():
            xt.grad = None
            F.max_pool2d(xt, k, s).backward(dyt)

    dy = rng.standard_normal(out.shape, dtype=np.float32)
    dyt = torch.from_numpy(dy)
    return ours, theirs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--tune-malloc", action="store_true", help="raise glibc malloc thresholds")
    args = ap.parse_args(argv)
    if args.tune_malloc:
        _tune_malloc()

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} threads, numpy {np.__version__}, torch {torch.__version__}, float32, "
        f"min / median of {args.repeat}, malloc {'tuned' if args.tune_malloc else 'default'}"
    )
    print(f"{'layer':<9} {'x':<18} {'w / pool':<18} {'normlab ms':>16} {'torch ms':>16} ratio")
    with threadpool_limits(args.threads, user_api="blas"):
        for (kind, fwd, bwd), xs, ws, param in _cases():
            x = rng.standard_normal(xs, dtype=np.float32)
            w = None if ws is None else rng.standard_normal(ws, dtype=np.float32)
            ours, theirs = _steps(torch, kind, fwd, bwd, x, w, param, rng)
            times = {ours: [], theirs: []}
            for _ in range(3):
                ours(), theirs()
            for _ in range(args.repeat):
                for fn in (ours, theirs):
                    t0 = time.perf_counter()
                    fn()
                    times[fn].append(time.perf_counter() - t0)
            (a_min, a_med), (t_min, t_med) = (
                (min(times[f]) * 1e3, float(np.median(times[f])) * 1e3) for f in (ours, theirs)
            )
            what = (
                str(ws) if ws else f"{param['pool_height']}x{param['pool_width']}/{param['stride']}"
            )
            print(
                f"{kind:<9} {str(xs):<18} {what:<18} {a_min:7.2f} / {a_med:6.2f} "
                f"{t_min:7.2f} / {t_med:6.2f} {a_min / t_min:5.2f}"
            )


if __name__ == "__main__":
    main()
