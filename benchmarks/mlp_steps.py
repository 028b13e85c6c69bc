"""N training steps of the lecture MLP, for instruction counts of one step (not a timer).

Run:  python benchmarks/mlp_steps.py N [--tree DIR]

784-32-32-10 with batch norm, float32, Adam lr 0.01, batch 32, on random data (so no dataset is
needed): builds the model and the Solver, then takes N steps. Under callgrind the difference of
two runs is the cost of the steps alone, repeatable to a few instructions whatever else the
machine is doing (the kernels must be in numba's cache for valgrind's CPU first: run each
command once before measuring)::

    for n in 200 600; do OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 valgrind --tool=callgrind \\
        --callgrind-out-file=/dev/null python benchmarks/mlp_steps.py $n; done

(instructions at 600 - instructions at 200) / 400 = instructions per step. ``--tree DIR`` runs
the normlab of another checkout (e.g. a ``git worktree`` of an older commit).
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, help="training steps")
    ap.add_argument("--tree", default=None, help="a checkout whose normlab to run")
    args = ap.parse_args(argv)
    if args.tree:
        sys.path.insert(0, args.tree)
    import numpy as np

    from normlab.models import FullyConnectedNet
    from normlab.solver import Solver

    rng = np.random.default_rng(0)
    n = 32 * 64
    data = {
        "X_train": rng.random((n, 784), dtype=np.float32),
        "y_train": rng.integers(10, size=n),
        "X_val": rng.random((100, 784), dtype=np.float32),
        "y_val": rng.integers(10, size=100),
    }
    model = FullyConnectedNet(
        [32, 32], input_dim=784, num_classes=10, normalization="batchnorm", weight_scale="he",
        dtype=np.float32, seed=0,
    )  # fmt: skip
    solver = Solver(
        model, data, update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=32,
        num_epochs=1, verbose=False, seed=0,
    )  # fmt: skip
    step = getattr(solver, "step", None) or solver._step  # older trees: the private name
    for _ in range(args.n):
        step()


if __name__ == "__main__":
    main()
