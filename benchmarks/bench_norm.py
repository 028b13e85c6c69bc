"""Forward + backward time of normlab's normalization layers against PyTorch CPU.

Batch, spatial batch, layer, group, RMS and instance norm.

Run:  python benchmarks/bench_norm.py [--threads 2] [--repeat 30] [--markdown]

For each case: median time of one forward (train mode) + one backward, float32, for the
normlab kernels (default backend), the normlab NumPy reference (``NORMLAB_BACKEND=numpy``) and
PyTorch (``y.backward(dy)`` through autograd, its fastest general path), all in the same run,
with the ratio normlab / PyTorch, and the memory-traffic floor of the layer on that input
(``_floor.py``: the passes over memory the kernel's data flow must make, timed as plain
streaming kernels on the same threads). Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
from functools import partial

import numpy as np


def _cases():
    from normlab import layers as L

    bn = ("batchnorm", L.batchnorm_forward, L.batchnorm_backward_alt)
    sbn = ("spatial_batchnorm", L.spatial_batchnorm_forward, L.spatial_batchnorm_backward)
    ln = ("layernorm", L.layernorm_forward, L.layernorm_backward)
    gn = ("groupnorm G=8", L.spatial_groupnorm_forward, L.spatial_groupnorm_backward)
    rms = ("rmsnorm", L.rmsnorm_forward, L.rmsnorm_backward)  # no beta
    inn = ("instancenorm", L.spatial_instancenorm_forward, L.spatial_instancenorm_backward)
    return [
        (bn, (32, 32)),
        (bn, (128, 512)),
        (bn, (256, 4096)),
        (bn, (4096, 1024)),
        (sbn, (32, 64, 32, 32)),
        (sbn, (128, 16, 28, 28)),
        (ln, (128, 512)),
        (ln, (4096, 1024)),
        (gn, (32, 64, 32, 32)),
        (gn, (128, 16, 28, 28)),
        (rms, (128, 512)),
        (rms, (4096, 1024)),
        (inn, (32, 64, 32, 32)),
        (inn, (128, 16, 28, 28)),
    ]


def _normlab_step(name, fwd, bwd, x, g, b, dy):
    if name.startswith("groupnorm"):
        out, cache = fwd(x, g, b, 8, {})
    elif name == "layernorm":
        out, cache = fwd(x, g, b, {})
    elif name == "rmsnorm":
        out, cache = fwd(x, g, {"eps": 1e-5})
    elif name == "instancenorm":  # no running statistics (PyTorch's default)
        out, cache = fwd(x, g, b, {"eps": 1e-5})
    else:
        out, cache = fwd(x, g, b, {"mode": "train"})
    bwd(dy, cache)


def _torch_step(torch, name, x, g, b, dy):
    F = torch.nn.functional
    x.grad = g.grad = b.grad = None
    if name.startswith("groupnorm"):
        y = F.group_norm(x, 8, g, b, 1e-5)
    elif name == "layernorm":
        y = F.layer_norm(x, (x.shape[1],), g, b, 1e-5)
    elif name == "rmsnorm":
        y = F.rms_norm(x, (x.shape[1],), g, 1e-5)
    elif name == "instancenorm":
        y = F.instance_norm(x, None, None, g, b, True, 0.1, 1e-5)
    else:
        y = F.batch_norm(x, None, None, g, b, True, 0.1, 1e-5)
    y.backward(dy)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args(argv)

    import torch
    from _common import machine_line, median_seconds, setup
    from _floor import floor_seconds

    from normlab.kernels.norm import PARALLEL_MIN

    setup(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    once = []
    for (name, fwd, bwd), shape in _cases():
        C = shape[1]
        x = rng.standard_normal(shape, dtype=np.float32)
        dy = rng.standard_normal(shape, dtype=np.float32)
        g = np.ones(C, np.float32)
        b = np.zeros(C, np.float32)
        t = {}
        for backend in ("numba", "numpy"):
            os.environ["NORMLAB_BACKEND"] = backend
            t[backend] = median_seconds(
                partial(_normlab_step, name, fwd, bwd, x, g, b, dy), args.repeat
            )
        os.environ.pop("NORMLAB_BACKEND")
        xt = torch.from_numpy(x).requires_grad_(True)
        gt = torch.from_numpy(g).requires_grad_(True)
        bt = torch.from_numpy(b).requires_grad_(True)
        dyt = torch.from_numpy(dy)
        t["torch"] = median_seconds(partial(_torch_step, torch, name, xt, gt, bt, dyt), args.repeat)
        threads = args.threads if x.size >= PARALLEL_MIN else 1
        # the others find their second pass in cache: row by row (layer, RMS norm), group by
        # group (group norm; instance norm is group norm with G = C), channel by channel
        reads_twice = name == "batchnorm"
        timer = partial(lambda repeat, fn: median_seconds(fn, repeat), args.repeat)
        t["floor"] = floor_seconds(x, dy, reads_twice, threads, timer)
        rows.append((name, shape, t["numba"], t["numpy"], t["torch"], t["floor"]))
        if reads_twice:  # what a batch norm that kept each column tile in cache could reach
            once.append((shape, floor_seconds(x, dy, False, threads, timer) / t["torch"]))

    head = (
        "layer", "shape", "kernels ms", "floor ms", "numpy ms", "torch ms", "kernels/torch",
        "floor/torch", "numpy/torch",
    )  # fmt: skip
    lines = [head]
    for name, shape, tk, tn, tt, tf in rows:
        lines.append(
            (
                name,
                str(shape),
                f"{tk * 1e3:.3f}",
                f"{tf * 1e3:.3f}",
                f"{tn * 1e3:.3f}",
                f"{tt * 1e3:.3f}",
                f"{tk / tt:.2f}",
                f"{tf / tt:.2f}",
                f"{tn / tt:.2f}",
            )
        )
    print(f"# {machine_line(args.threads)}; float32, median of {args.repeat}, malloc pinned")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in lines[1:]:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
        for row in lines:
            print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    worst = max(r[2] / r[4] for r in rows)
    worst_floor = max(r[5] / r[4] for r in rows)
    print(f"worst kernels/torch ratio: {worst:.2f}; worst floor/torch ratio: {worst_floor:.2f}")
    for shape, ratio in once:
        print(f"batchnorm {shape}: floor/torch if x and dy were read once: {ratio:.2f}")


if __name__ == "__main__":
    main()
