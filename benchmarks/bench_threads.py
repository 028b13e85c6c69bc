"""Why medium inputs run on one thread: a layer alone against the training step around it.

Run:  python benchmarks/bench_threads.py [--repeat 200]

For a medium input (128, 512), float32, forward + backward of layer norm and batch norm, and
one loss-and-gradient step of a 784-512-512-512-10 MLP with that normalization (batch 128,
OpenBLAS matrix products between the layers), under three settings, each in a fresh process
(OpenMP reads its environment once):

* ``one thread``: the kernels' default (``PARALLEL_MIN = 2**20`` elements);
* ``two threads``: ``PARALLEL_MIN = 65536``, so (128, 512) takes the parallel kernels;
* ``two threads, passive``: the same with ``OMP_WAIT_POLICY=PASSIVE``, so numba's OpenMP
  workers sleep at once after a parallel region instead of spinning.

Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SETTINGS = [
    ("one thread", None, {}),
    ("two threads", 65536, {}),
    ("two threads, passive", 65536, {"OMP_WAIT_POLICY": "PASSIVE"}),
]


def _measure(parallel_min, repeat):
    """Times (µs) in this process, with the kernels' threshold set to ``parallel_min``."""
    import numpy as np
    from _common import median_seconds, setup

    import normlab.kernels.norm as kern
    from normlab import layers as L
    from normlab.models.fc_net import FullyConnectedNet

    setup(2)
    if parallel_min is not None:
        kern.PARALLEL_MIN = parallel_min
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 512), dtype=np.float32)
    dy = rng.standard_normal((128, 512), dtype=np.float32)
    g = np.ones(512, np.float32)
    b = np.zeros(512, np.float32)

    def ln():
        _, cache = L.layernorm_forward(x, g, b, {})
        L.layernorm_backward(dy, cache)

    def bn():
        _, cache = L.batchnorm_forward(x, g, b, {"mode": "train"})
        L.batchnorm_backward_alt(dy, cache)

    X = rng.standard_normal((128, 784), dtype=np.float32)
    y = rng.integers(0, 10, 128)

    def us(fn, n):
        return 1e6 * median_seconds(fn, n, warmup=5)

    out = {"layernorm": us(ln, repeat), "batchnorm": us(bn, repeat)}
    for norm in ("layernorm", "batchnorm"):
        net = FullyConnectedNet([512, 512, 512], input_dim=784, normalization=norm, seed=0)
        out[f"mlp {norm}"] = us(lambda net=net: net.loss(X, y), max(repeat // 4, 20))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:  # one setting, in a fresh process
        pm = args.child or None
        print(json.dumps(_measure(pm, args.repeat)))
        return
    from _common import machine_line

    usable = (
        os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    )
    if len(usable) < 2:
        raise SystemExit("bench_threads compares one thread with two: it needs 2 usable cores")
    here = os.path.dirname(os.path.abspath(__file__))
    results = []
    for label, pm, env in SETTINGS:
        cmd = [sys.executable, __file__, "--repeat", str(args.repeat), "--child", str(pm or 0)]
        proc = subprocess.run(
            cmd, env={**os.environ, **env}, cwd=here, capture_output=True, text=True
        )
        if proc.returncode:
            raise SystemExit(f"setting {label!r} failed:\n{proc.stderr}")
        results.append((label, json.loads(proc.stdout.strip().splitlines()[-1])))
    print(f"# {machine_line(2)}; medians, float32, (128, 512) and a batch of 128")
    keys = ["layernorm", "batchnorm", "mlp layernorm", "mlp batchnorm"]
    head = ["setting", "LN fwd+bwd µs", "BN fwd+bwd µs", "LN MLP step ms", "BN MLP step ms"]
    print(" | ".join(head))
    for label, r in results:
        cells = [f"{r[k]:.1f}" for k in keys[:2]] + [f"{r[k] / 1e3:.2f}" for k in keys[2:]]
        print(" | ".join([label, *cells]))


if __name__ == "__main__":
    main()
