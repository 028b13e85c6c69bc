"""What the non-finite statistics check costs: each case of ``bench_norm.py`` with and without it.

Run:  python benchmarks/finite_check.py [--threads 2] [--rounds 15] [--repeat 20]

A train-mode normalization refuses non-finite batch statistics before it touches the running
statistics (``normlab.layers._checks.check_finite_stats``: one dot product of ``mean`` and
``var``). This times forward + backward of every ``bench_norm.py`` case twice per round -- as
shipped, and with the check replaced by a no-op -- interleaved, so that the machine's drift
hits both alike, and prints the median of each, their difference in microseconds and as a
share of the step. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np


@contextlib.contextmanager
def _without_check():
    """The layers' ``check_finite_stats`` replaced by a no-op for the duration."""
    from normlab.layers import batchnorm, layernorm

    saved = batchnorm.check_finite_stats, layernorm.check_finite_stats
    batchnorm.check_finite_stats = layernorm.check_finite_stats = lambda *a, **k: None
    try:
        yield
    finally:
        batchnorm.check_finite_stats, layernorm.check_finite_stats = saved


def _seconds(step, repeat: int) -> float:
    """Median seconds of ``repeat`` calls of ``step``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None) -> None:
    from _common import machine_line, setup
    from bench_norm import _cases, _normlab_step

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    p.add_argument("--repeat", type=int, default=20, help="calls per round (default 20)")
    args = p.parse_args(argv)
    setup(args.threads)
    print(machine_line(args.threads))
    print(f"{'case':<34} {'with (us)':>10} {'without':>10} {'cost (us)':>10} {'share':>7}")
    rng = np.random.default_rng(0)
    for (name, fwd, bwd), shape in _cases():
        x = rng.standard_normal(shape).astype(np.float32)
        C = shape[1]
        g, b = np.ones(C, np.float32), np.zeros(C, np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)

        def step(name=name, fwd=fwd, bwd=bwd, x=x, g=g, b=b, dy=dy):
            _normlab_step(name, fwd, bwd, x, g, b, dy)

        for _ in range(3):  # compile and warm up both variants
            step()
            with _without_check():
                step()
        with_s, without_s = [], []
        for _ in range(args.rounds):
            with_s.append(_seconds(step, args.repeat))
            with _without_check():
                without_s.append(_seconds(step, args.repeat))
        a, b_ = np.median(with_s) * 1e6, np.median(without_s) * 1e6
        label = f"{name} {shape}"
        print(f"{label:<34} {a:10.1f} {b_:10.1f} {a - b_:10.2f} {(a - b_) / b_:7.1%}")


if __name__ == "__main__":
    main()
