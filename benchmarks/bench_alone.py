"""normlab and PyTorch each alone in a process of its own: the ConvNet step and the conv layers.

Run:  python benchmarks/bench_alone.py [--pairs 4] [--threads 2] [--repeat 40] [--steps-only]
                                      [--env VAR=VALUE]

The same work as ``bench_convnet_step.py`` (both inputs, batch norm) and ``bench_conv.py``'s
conv cases, but never two libraries in one process: each pair of runs starts a fresh process
for normlab, then one for PyTorch (the order alternating from pair to pair), and each prints
the median over ``--repeat`` timed calls after 5 untimed ones. Printed: each library's median
over the pairs and the median, minimum and maximum of the per-pair ratio normlab / PyTorch.
With ``--env VAR=VALUE`` the second process of each pair is normlab again, with that variable
set, and the ratio is normlab with it / normlab without it (e.g. ``--env
OPENBLAS_THREAD_TIMEOUT=4``, ``benchmarks/README.md``, "Stop 20").

Why a second protocol: in one process each library's idle threads spin beside the other's
work. OpenBLAS's workers spin for 2**28 cycles (~0.1 s) after every matrix product; beside them
PyTorch's conv layers took up to twice their time alone (``benchmarks/README.md``, "Stop 20"),
and the interleaved scripts now set ``OPENBLAS_THREAD_TIMEOUT=4``, which in turn costs
normlab's matrix products a wake-up each. Here each library runs in the environment this
script was started in (OpenBLAS's default unless you set the variable) with nothing else in its
process; glibc's malloc thresholds are pinned in both (``normlab/_malloc.py``). Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _steps import cpu_model

STEP_INPUTS = [(1, 28, 28), (3, 32, 32)]


def _child(lib: str, threads: int, repeat: int, steps_only: bool) -> dict:
    """Median milliseconds of each piece of work, run by ``lib`` alone in this process."""
    import numpy as np
    from _steps import (
        CONV_CASES,
        batches,
        conv_case,
        median_seconds,
        normlab_conv,
        normlab_convnet,
        torch_conv,
        torch_convnet,
    )

    from normlab._malloc import pin_malloc_thresholds

    pin_malloc_thresholds()
    if lib == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        import numba
        from threadpoolctl import threadpool_limits

        from normlab.kernels import start_pool

        start_pool()  # before set_num_threads, which would start the pool with default spin
        numba.set_num_threads(threads)
        threadpool_limits(threads, user_api="blas")
    work = {}
    for C, H, W in STEP_INPUTS:
        data = batches(np.random.default_rng(0), 64, C, H, W)
        work[f"step {C},{H},{W}"] = (
            torch_convnet(torch, data, C, H, W, "batchnorm")
            if lib == "torch"
            else normlab_convnet(data, C, H, W, "batchnorm")
        )
    for xs, ws, s, p in [] if steps_only else CONV_CASES:
        args = conv_case(np.random.default_rng(0), xs, ws, s, p)
        name = f"conv {xs} {ws} s{s}"
        work[name] = torch_conv(torch, *args, s, p) if lib == "torch" else normlab_conv(*args, s, p)
    return {name: 1e3 * median_seconds(fn, repeat, warmup=5) for name, fn in work.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--steps-only", action="store_true", help="the ConvNet steps alone")
    ap.add_argument(
        "--env",
        metavar="VAR=VALUE",
        help="instead of PyTorch, normlab again with VAR=VALUE in its environment (e.g. "
        "OPENBLAS_THREAD_TIMEOUT=4): the ratio is then with / without",
    )
    ap.add_argument("--child", choices=["normlab", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.threads, args.repeat, args.steps_only)))
        return
    base = dict(os.environ)
    sides = [("normlab", "normlab", base), ("torch", "torch", base)]
    if args.env:
        var, sep, value = args.env.partition("=")
        if not sep or not var:
            raise SystemExit(f"--env: expected VAR=VALUE, got {args.env!r}")
        sides = [("normlab", "normlab", base), (args.env, "normlab", {**base, var: value})]
    here = os.path.dirname(os.path.abspath(__file__))
    runs = {label: [] for label, _, _ in sides}
    for k in range(args.pairs):
        for label, lib, env in sides if k % 2 == 0 else sides[::-1]:
            cmd = [sys.executable, __file__, "--child", lib, "--threads", str(args.threads)]
            cmd += ["--repeat", str(args.repeat)] + (["--steps-only"] if args.steps_only else [])
            proc = subprocess.run(cmd, cwd=here, env=env, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"{label} run failed:\n{proc.stderr}")
            runs[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    cpu = cpu_model()
    timeout = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "unset (OpenBLAS default)")
    first, second = (label for label, _, _ in sides)
    print(f"# {time.strftime('%Y-%m-%d')}, {cpu}, {args.threads} threads, pairs of processes:")
    print(f"# {args.pairs}, median of {args.repeat} calls each; OPENBLAS_THREAD_TIMEOUT {timeout}")
    if args.env:
        print(f"# second column: normlab with {second}; ratio with / without")
    other = "with ms" if args.env else "torch ms"
    print(f"{'work':<42} {'normlab ms':>10} {other:>9}  ratio (min-max over pairs)")
    for name in runs[first][0]:
        a = [r[name] for r in runs[first]]
        t = [r[name] for r in runs[second]]
        ratios = [(y / x if args.env else x / y) for x, y in zip(a, t, strict=True)]
        print(
            f"{name:<42} {statistics.median(a):10.2f} {statistics.median(t):9.2f}  "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
