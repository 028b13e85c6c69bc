"""The PyTorch lecture experiment, timed: 784-32-32-10 with batch norm, Adam lr 0.01, batch 32.

Run:  python benchmarks/bench_mlp.py [--epochs 10] [--threads 2] [--data-dir DIR]

Trains the same network on Fashion-MNIST with normlab (``FullyConnectedNet`` +
``Solver``, fused Adam) and with PyTorch CPU (``nn.Sequential`` of ``Linear``/``BatchNorm1d``/
``ReLU``, ``torch.optim.Adam(fused=True)``, the fastest CPU Adam), in the same process, on the
same arrays, the same batches per epoch (a fresh permutation, ragged last batch dropped as in the
lecture's ``drop_last=True``). Prints seconds per epoch of training (no evaluation inside the
timed loop) and test accuracy after the last epoch for both, and the time ratio. Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import fashion_mnist, machine_line, setup


def _normlab_run(data, epochs, seed, normalization):
    from normlab.models import FullyConnectedNet
    from normlab.solver import Solver

    model = FullyConnectedNet(
        [32, 32],
        input_dim=784,
        num_classes=10,
        normalization=normalization,
        weight_scale="he",
        dtype=np.float32,
        seed=seed,
    )
    solver = Solver(
        model,
        data,
        update_rule="adam",
        optim_config={"learning_rate": 1e-2},
        batch_size=32,
        num_epochs=epochs,
        verbose=False,
        seed=seed,
    )
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for _ in range(solver.iterations_per_epoch):
            solver.step()
        times.append(time.perf_counter() - t0)
    acc = solver.check_accuracy(data["X_test"], data["y_test"], batch_size=1000)
    return times, acc


def _torch_run(torch, data, epochs, seed, normalization):
    nn = torch.nn
    torch.manual_seed(seed)
    norm = (lambda d: nn.BatchNorm1d(d)) if normalization else (lambda d: nn.Identity())
    model = nn.Sequential(
        nn.Linear(784, 32),
        norm(32),
        nn.ReLU(),
        nn.Linear(32, 32),
        norm(32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    X = torch.from_numpy(data["X_train"].reshape(len(data["X_train"]), -1))
    y = torch.from_numpy(data["y_train"])
    rng = np.random.default_rng(seed)
    n_batches = len(X) // 32
    times = []
    model.train()
    for _ in range(epochs):
        perm = torch.from_numpy(rng.permutation(len(X)))
        t0 = time.perf_counter()
        for i in range(n_batches):
            idx = perm[i * 32 : (i + 1) * 32]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        Xt = torch.from_numpy(data["X_test"].reshape(len(data["X_test"]), -1))
        acc = (model(Xt).argmax(1).numpy() == data["y_test"]).mean()
    return times, float(acc)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)

    import torch

    setup(args.threads)
    data = fashion_mnist(args.data_dir)
    print(f"# {machine_line(args.threads)}")
    print(
        f"# Fashion-MNIST {len(data['X_train'])} train / {len(data['X_test'])} test, "
        f"{args.epochs} epochs, batch 32, Adam lr 0.01; median seconds per training epoch"
    )
    print(
        f"{'model':<22} {'normlab s/epoch':>15} {'torch s/epoch':>14} {'ratio':>6} "
        f"{'normlab acc':>11} {'torch acc':>9}"
    )
    for normalization in ("batchnorm", None):
        tn, an = _normlab_run(data, args.epochs, args.seed, normalization)
        tt, at = _torch_run(torch, data, args.epochs, args.seed, normalization)
        mn, mt = statistics.median(tn), statistics.median(tt)
        name = "784-32-32-10 " + ("+BN" if normalization else "no norm")
        print(f"{name:<22} {mn:>15.3f} {mt:>14.3f} {mn / mt:>6.2f} {an:>11.4f} {at:>9.4f}")


if __name__ == "__main__":
    main()
