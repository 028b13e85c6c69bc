"""Fashion-MNIST accuracy against the data set's published benchmark table, with times.

Run:  python benchmarks/bench_fashion.py [--model mlp|conv|both] [--epochs N] [--threads 2]
                                         [--data-dir DIR] [--torch-epoch] [--augment SPEC]

* ``mlp``: 784-256-128-100-10 (the table's "MLPClassifier 256-128-100", 0.8833) with batch
  norm, and the same net without normalization; Adam, lr decay.
* ``conv``: a small 2-conv net, conv(32)-BN-ReLU-pool-conv(64)-BN-ReLU-pool-fc(128)-BN-ReLU-fc,
  the size of the table's small 2-conv entries (0.925), and the same without normalization.
* ``--torch-epoch``: one training epoch of the ConvNet in normlab and in PyTorch CPU (same
  architecture, Adam(fused=True)), same batches, in the same run.

Prints test accuracy (best-validation parameters, as the Solver restores) and wall-clock
training time. Not a test.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import fashion_mnist, machine_line, setup

CONV = dict(num_filters=(32, 64), filter_size=3, hidden_dims=(128,))


def _model(kind, normalization, seed, reg=0.0, keep=1.0):
    from normlab.models import ConvNet, FullyConnectedNet

    if kind == "mlp":
        return FullyConnectedNet(
            [256, 128, 100],
            input_dim=784,
            num_classes=10,
            normalization=normalization,
            weight_scale="he",
            seed=seed,
            reg=reg,
        )
    return ConvNet(
        (1, 28, 28),
        normalization=normalization,
        weight_scale="he",
        seed=seed,
        reg=reg,
        dropout_keep_ratio=keep,
        **CONV,
    )


def _train(kind, normalization, data, epochs, seed, reg=0.0, lr_decay=0.85, keep=1.0, aug="none"):
    from normlab.data import Augment
    from normlab.solver import Solver

    model = _model(kind, normalization, seed, reg, keep)
    lr = 1e-3
    solver = Solver(
        model,
        data,
        update_rule="adam",
        optim_config={"learning_rate": lr},
        lr_decay=lr_decay,
        batch_size=128 if kind == "mlp" else 64,
        num_epochs=epochs,
        num_train_samples=5000,
        verbose=True,
        progress=False,
        print_every=10**9,
        seed=seed,
        augment=None if aug == "none" else Augment.from_spec(aug),
    )
    t0 = time.perf_counter()
    solver.train()
    seconds = time.perf_counter() - t0
    acc = solver.check_accuracy(data["X_test"], data["y_test"], batch_size=500)
    return acc, seconds, solver.best_val_acc


def _torch_conv_epoch(torch, data, seed, batch=64):
    nn = torch.nn
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    X, y = torch.from_numpy(data["X_train"]), torch.from_numpy(data["y_train"])
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(X)))
    t0 = time.perf_counter()
    for i in range(len(X) // batch):
        idx = perm[i * batch : (i + 1) * batch]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(X[idx]), y[idx]).backward()
        opt.step()
    return time.perf_counter() - t0


def _normlab_conv_epoch(data, seed, batch=64):
    from normlab.solver import Solver

    model = _model("conv", "batchnorm", seed)
    solver = Solver(
        model,
        data,
        update_rule="adam",
        optim_config={"learning_rate": 1e-3},
        batch_size=batch,
        num_epochs=1,
        verbose=False,
        seed=seed,
    )
    t0 = time.perf_counter()
    for _ in range(solver.iterations_per_epoch):
        solver.step()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["mlp", "conv", "both", "none"], default="both")
    ap.add_argument("--epochs", type=int, default=None, help="default: 20 (mlp), 12 (conv)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--torch-epoch", action="store_true")
    ap.add_argument("--reg", type=float, default=0.0, help="L2 strength (default 0)")
    ap.add_argument("--lr-decay", type=float, default=0.85, help="per epoch (default 0.85)")
    ap.add_argument("--norms", default="batchnorm,none", help="default: batchnorm,none")
    ap.add_argument("--keep", type=float, default=1.0, help="conv: dropout keep ratio of fc")
    ap.add_argument(
        "--augment", default="none", help="training batches: e.g. flip,shift2 (default none)"
    )
    args = ap.parse_args(argv)

    import torch

    setup(args.threads)
    print(f"# {machine_line(args.threads)}")
    data = fashion_mnist(args.data_dir, scale_only=False)
    kinds = {"both": ["mlp", "conv"], "none": []}.get(args.model, [args.model])
    for kind in kinds:
        epochs = args.epochs or (20 if kind == "mlp" else 12)
        for name in args.norms.split(","):
            normalization = None if name == "none" else name
            acc, seconds, val = _train(
                kind,
                normalization,
                data,
                epochs,
                args.seed,
                args.reg,
                args.lr_decay,
                args.keep,
                args.augment,
            )
            print(
                f"RESULT {kind} norm={normalization} epochs={epochs} reg={args.reg} "
                f"lr_decay={args.lr_decay} keep={args.keep} augment={args.augment} "
                f"test_acc={acc:.4f} best_val={val:.4f} "
                f"train_seconds={seconds:.1f}",
                flush=True,
            )
    if args.torch_epoch:
        tn = _normlab_conv_epoch(data, args.seed)
        tt = _torch_conv_epoch(torch, data, args.seed)
        print(f"RESULT conv-epoch normlab={tn:.1f}s torch={tt:.1f}s ratio={tn / tt:.2f}")


if __name__ == "__main__":
    main()
