"""What a Recorder costs: training with and without ``Recorder(model, every=20)``.

Run:  python benchmarks/bench_diagnostics.py [--rounds 40] [--every 20] [--batch-size 100]
      [--threads 2] [--verbose]

The network of issue 13's budget: ``FullyConnectedNet([100] * 5)`` with batch norm, ReLU, He
init, float32, on the embedded digits (1197 training images of 8x8), Adam lr 1e-3, batch 100.
Two models train side by side, one without and one with a Recorder, in interleaved chunks of
``--every`` steps (so each of the Recorder's chunks holds one recorded iteration; the order
alternates between rounds, and a load change on the shared machine hits both), timing the
steps, callbacks included, in wall and process CPU time. Prints the CPU line, the median and
quartiles of the per-chunk ratios with/without (the budget: <= 1.10); the time spent inside
the Recorder's code over the rest of its run's training time (the same ratio, less sensitive
to a loaded machine, as both sides see the same load); and the cost of the
model's probe hook: ``loss(X, y)`` with ``probe`` None against a no-op probe (an upper bound
on what the hook costs unset, which is one attribute read). Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import machine_line, setup


def _solver(data, batch_size, callbacks_for):
    from normlab.models import FullyConnectedNet
    from normlab.solver import Solver

    model = FullyConnectedNet(
        [100] * 5, input_dim=64, num_classes=10, normalization="batchnorm",
        weight_scale="he", dtype=np.float32, seed=0,
    )  # fmt: skip
    solver = Solver(
        model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
        batch_size=batch_size, num_epochs=10**6, verbose=False, seed=0,
        callbacks=callbacks_for(model),
    )  # fmt: skip
    return model, solver


def _chunk(solver, steps: int) -> tuple[float, float]:
    """Wall and process CPU seconds of ``steps`` Solver steps."""
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        solver.step()
    return time.perf_counter() - w0, time.process_time() - c0


def _probe_cost(data, batch_size, repeat=400) -> tuple[float, float]:
    """Median seconds of ``model.loss(X, y)`` with ``probe`` None and with a no-op probe."""
    model, _ = _solver(data, batch_size, lambda m: None)
    X, y = data["X_train"][:batch_size], data["y_train"][:batch_size]
    out = {None: [], "noop": []}
    for _ in range(repeat):  # interleaved
        for key in out:
            model.probe = None if key is None else (lambda stage, blk, h: None)
            t0 = time.perf_counter()
            model.loss(X, y)
            out[key].append(time.perf_counter() - t0)
    return statistics.median(out[None]), statistics.median(out["noop"])


def _timed_recorder_class():
    """A Recorder that adds up the wall time spent in its own code (callback and probe)."""
    from normlab.diagnostics import Recorder

    class TimedRecorder(Recorder):
        seconds = 0.0

        def __call__(self, solver, info):
            t0 = time.perf_counter()
            super().__call__(solver, info)
            self.seconds += time.perf_counter() - t0

        def _probe(self, stage, blk, h):
            t0 = time.perf_counter()
            super()._probe(stage, blk, h)
            self.seconds += time.perf_counter() - t0

    return TimedRecorder


def _quartiles(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=4)
    return f"{q[0]:.3f}-{q[2]:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40, help="chunk pairs")
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verbose", action="store_true", help="print every chunk's ratios")
    args = ap.parse_args()
    setup(args.threads)
    from normlab.data import load_dataset

    Recorder = _timed_recorder_class()

    print(machine_line(args.threads))
    data = load_dataset("digits")
    solvers = {
        "without": _solver(data, args.batch_size, lambda model: None)[1],
        "with": _solver(data, args.batch_size, lambda m: [Recorder(m, every=args.every)])[1],
    }
    for solver in solvers.values():  # warm-up: numba compiles or loads, pages fault in
        _chunk(solver, args.every)
    solvers["with"].callbacks[0].seconds = 0.0  # the warm-up record may include compilation
    wall, cpu, total = [], [], 0.0
    for r in range(args.rounds):  # chunk r: one recorded iteration of the Recorder's solver
        order = list(solvers) if r % 2 == 0 else list(solvers)[::-1]
        t = {k: _chunk(solvers[k], args.every) for k in order}
        wall.append(t["with"][0] / t["without"][0])
        cpu.append(t["with"][1] / t["without"][1])
        total += t["with"][0]
        if args.verbose:
            print(f"chunk {r}: wall ratio {wall[-1]:.3f}, cpu ratio {cpu[-1]:.3f}")
    rec = solvers["with"].callbacks[0]
    assert len(rec.iterations) == args.rounds + 1  # warm-up chunk included
    own = rec.seconds  # the timed chunks' records only
    steps = solvers["with"].iteration
    print(
        f"Recorder(every={args.every}), FC [100]*5 batchnorm, digits, batch {args.batch_size}: "
        f"{args.rounds} interleaved chunks of {args.every} steps (one recorded each); "
        f"median ratio with/without: wall {statistics.median(wall):.3f} "
        f"(quartiles {_quartiles(wall)}), process CPU {statistics.median(cpu):.3f} "
        f"(quartiles {_quartiles(cpu)}); {steps} steps each"
    )
    print(
        f"time inside the Recorder (callback + probe) / the rest of its run's training time: "
        f"{own / (total - own):.3f} ({own * 1e3 / args.rounds:.2f} ms per recorded iteration, "
        f"{(total - own) * 1e3 / (args.rounds * args.every):.2f} ms per step)"
    )
    unset, noop = _probe_cost(data, args.batch_size)
    print(
        f"loss(X, y): probe None {unset * 1e6:.1f} us, no-op probe {noop * 1e6:.1f} us "
        f"(ratio {noop / unset:.3f})"
    )


if __name__ == "__main__":
    main()
