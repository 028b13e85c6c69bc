"""normlab's conv layer on its two backends: what the col2im kernel buys at the layer.

Run:  python benchmarks/bench_conv_backends.py [--threads 1] [--rounds 21] [--inner 3]

Forward + backward of ``bench_conv.py``'s conv cases with ``NORMLAB_BACKEND=numba`` (the
default: col2im is the numba kernel of ``normlab/kernels/conv.py``) and ``numpy`` (the NumPy
strided adds); everything else in the layer is the same NumPy and OpenBLAS code on both, so
the ratio is the kernel's worth. The backend is read at every call, so the two alternate in
one process, ``--inner`` calls a block, the order alternating between rounds. Printed: median
ms per call of each and the median ratio kernel / NumPy with its IQR. Not a test.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import machine_line, setup
from _steps import CONV_CASES, conv_case, normlab_conv


def _block(fn, backend: str, inner: int) -> float:
    os.environ["NORMLAB_BACKEND"] = backend
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--inner", type=int, default=3)
    args = ap.parse_args(argv)

    setup(args.threads)
    print(f"# {machine_line(args.threads)}")
    print(f"# conv forward + backward, float32, {args.rounds} rounds of {args.inner} calls")
    print(f"{'x':<18} {'w':<18} {'numpy ms':>9} {'kernel ms':>9}  kernel/numpy (IQR)")
    rng = np.random.default_rng(0)
    before = os.environ.get("NORMLAB_BACKEND")
    for xs, ws, s, p in CONV_CASES:
        fn = normlab_conv(*conv_case(rng, xs, ws, s, p), s, p)
        for backend in ("numba", "numpy"):  # compile, first-touch allocation
            _block(fn, backend, 2)
        times = {"numba": [], "numpy": []}
        for r in range(args.rounds):
            for backend in ("numba", "numpy") if r % 2 == 0 else ("numpy", "numba"):
                times[backend].append(_block(fn, backend, args.inner))
        k, n = np.array(times["numba"]), np.array(times["numpy"])
        q1, med, q3 = np.percentile(k / n, [25, 50, 75])
        print(
            f"{str(xs):<18} {str(ws) + f' s{s}':<18} {np.median(n) * 1e3:9.2f} "
            f"{np.median(k) * 1e3:9.2f}  {med:.2f} ({q1:.2f}-{q3:.2f})",
            flush=True,
        )
    if before is None:
        os.environ.pop("NORMLAB_BACKEND")
    else:
        os.environ["NORMLAB_BACKEND"] = before


if __name__ == "__main__":
    main()
