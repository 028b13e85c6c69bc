"""Experiments: one module per experiment -- its config, runs, summary, headline and figures
(declared as data: experiments never draw) -- run by :func:`run_experiment` into a results dict
that a report reads alone.

Registry
--------
``EXPERIMENTS`` maps each command-line name to its :class:`~normlab.experiments.base.Experiment`:

=================  ==========================================================================
demo               deep net on the digits, none vs batch, layer and group norm (``normlab demo``)
bn-vs-baseline     CS231n notebook: deep net with and without batch norm, curves
weight-scale       CS231n notebook: 20 initial weight scales, with and without batch norm
batch-size         CS231n notebook: batch sizes 5, 10, 50 for none/batch/layer/group norm
paper-mnist        Ioffe & Szegedy 2015, Figure 1: test accuracy and a sigmoid's input
mlp-adam           PyTorch lecture MLP 784-32-32-10 with Adam: losses and accuracies per epoch
small-batch        Group Norm paper, small scale: ConvNet accuracy at batch sizes 2..64
rmsnorm            Zhang & Sennrich 2019: RMSNorm vs layer norm, accuracy and time per step
darknet-mismatch   darknet's batch-norm backward against the true gradient of its forward
renorm             Ioffe 2017 / Wu & He 2018, small scale: BN vs renorm vs GN (+WS), bs 2..64
ghost-bn           Hoffer et al. 2017: batch 1024, ghost batch norm V = 16..1024, the gap
init-diagnostics   Karpathy 2022 (makemore 3): tanh MLP, bad vs fixed init vs BN, diagnostics
noisy-bn           Santurkar et al. 2018 s2.1: BN + per-step noise (covariate shift) vs BN, none
lr-stability       Bjorck et al. 2018: largest learning rate that trains, with and without BN
landscape          Santurkar et al. 2018 s3.2: loss band, gradient change, beta along the gradient
population-stats   Wu & Johnson 2021: EMA vs precise BN; train/test inconsistency vs batch size
=================  ==========================================================================

Every experiment runs each of its runs as an independent task (:mod:`.runner`), so a sweep runs
the same on one core, N local processes or a Dask cluster, with the same numbers. What their
tasks share is in :mod:`.training` (one cached loader, one model builder, one Solver run),
:mod:`.batch_sweep` (the two batch-size sweeps), :mod:`.figspec` and :mod:`.wording`.
Adding an experiment is one module and its name in the tuple below.

Examples
--------
>>> from normlab.experiments import get_experiment, run_experiment
>>> exp = get_experiment("bn-vs-baseline")
>>> config = exp.quick(exp.config_cls(dataset="digits"))
>>> results = run_experiment(exp, config)  # doctest: +SKIP
>>> sorted(results["runs"])  # doctest: +SKIP
['batchnorm', 'none']
"""

from __future__ import annotations

from normlab.experiments import (
    batch_size,
    bn_vs_baseline,
    darknet_mismatch,
    demo,
    ghost_bn,
    init_diagnostics,
    landscape,
    lr_stability,
    mlp_adam,
    noisy_bn,
    paper_mnist,
    population_stats,
    renorm,
    rmsnorm,
    small_batch,
    weight_scale,
)
from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, TrainConfig
from normlab.experiments.runner import derive_seed, run_experiment, run_tasks

EXPERIMENTS: dict[str, Experiment] = {
    m.EXPERIMENT.name: m.EXPERIMENT
    for m in (
        demo,
        bn_vs_baseline,
        weight_scale,
        batch_size,
        paper_mnist,
        mlp_adam,
        small_batch,
        rmsnorm,
        darknet_mismatch,
        renorm,
        ghost_bn,
        init_diagnostics,
        landscape,
        population_stats,
        noisy_bn,
        lr_stability,
    )
}

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "ExperimentConfig",
    "RunSpec",
    "TrainConfig",
    "derive_seed",
    "get_experiment",
    "list_experiments",
    "run_experiment",
    "run_tasks",
]


def get_experiment(name: str) -> Experiment:
    """The experiment registered as ``name``.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    if name not in EXPERIMENTS:
        raise ValueError(
            f"unknown experiment {name!r}; known experiments are {', '.join(EXPERIMENTS)}"
        )
    return EXPERIMENTS[name]


def list_experiments() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every registered experiment."""
    return [(e.name, e.description) for e in EXPERIMENTS.values()]
