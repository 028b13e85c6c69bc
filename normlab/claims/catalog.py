"""The claims, as data: what each says, where it comes from, the experiment and setting that
test it, and the function of the results that measures it (:mod:`normlab.claims.measures`).

A setting is the experiment's config overrides for the full run (``setting``: Fashion-MNIST
where two cores allow the steps a claim needs, the embedded digits where they do not) and for
``--quick`` (``quick``: overrides of the experiment's own quick variant, always on the digits).
Claims that name the same experiment with the same setting share its runs
(:func:`normlab.claims.run.plan`): the batch-size claims read one ``renorm`` sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from normlab.claims import measures
from normlab.claims.verdict import Finding

__all__ = ["CLAIMS", "Claim", "get_claims"]


@dataclass(frozen=True)
class Claim:
    """One published claim and how normlab tests it.

    Attributes
    ----------
    name : str
        Short identifier (``--only NAME``), e.g. ``"bn-trains-faster"``.
    text : str
        The claim in one line.
    source : str
        Paper and section, or course.
    experiment : str
        The registered experiment that tests it (:data:`normlab.experiments.EXPERIMENTS`).
    setting : dict
        Config overrides of the full run (dataset, sizes).
    quick : dict
        Config overrides of the ``--quick`` run, on top of the experiment's quick variant on
        the digits.
    measure : callable
        ``measure(results) -> Finding`` of the experiment's results.
    shown : tuple of str
        Config fields the row prints beside the dataset (the setting as a reader needs it).
    note : str
        What the row must say beside the numbers (an equivalence margin, a proxy).
    """

    name: str
    text: str
    source: str
    experiment: str
    measure: Callable[[dict], Finding]
    setting: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)
    shown: tuple[str, ...] = ()
    note: str = ""


# One ConvNet sweep over the batch size serves two claims (batch norm degrades at small batch;
# batch renorm recovers it): batch, renorm, layer and group norm side by side.
_BATCH_SWEEP = {
    "dataset": "fashion-mnist",
    "normalizations": ["batchnorm", "batchrenorm", "layernorm", "groupnorm"],
    "weight_standardized": [],
    "batch_sizes": [2, 8, 64],
    "num_filters": [8, 16],
    "hidden_dims": [32],
    "num_training": 2000,
    "num_epochs": 3,
}
_BATCH_SWEEP_QUICK = {
    "normalizations": ["batchnorm", "batchrenorm", "layernorm", "groupnorm"],
    "weight_standardized": [],
}
_BATCH_SHOWN = ("batch_sizes", "num_training", "num_epochs", "num_filters")

# One population-stats study serves two claims (EMA vs precise BN; train/test inconsistency).
_POPULATION = {"dataset": "fashion-mnist", "num_training": 10_000}
_POPULATION_SHOWN = ("num_training", "num_epochs", "batch_size", "norm_batch_sizes")

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "bn-trains-faster",
        "Batch norm trains faster: higher accuracy sooner than the same net without it.",
        "Ioffe & Szegedy 2015, §4.1 and §4.2",
        "bn-vs-baseline",
        measures.trains_faster,
        setting={"dataset": "fashion-mnist"},
        shown=("hidden_dims", "weight_scale", "num_training", "num_epochs"),
        note="speed measured as the mean validation accuracy over the epochs (area under the "
        "learning curve)",
    ),
    Claim(
        "sigmoid-input-stable",
        "With batch norm the input distribution of a sigmoid stays stable during training.",
        "Ioffe & Szegedy 2015, §4.1, Figure 1 (b, c)",
        "paper-mnist",
        measures.sigmoid_input_stable,
        setting={"dataset": "fashion-mnist", "num_steps": 6000, "eval_every": 300},
        shown=("hidden_dims", "num_steps", "batch_size"),
        note="stability measured as the range over training of one last-layer sigmoid's median "
        "input on fixed test images (the paper: 50,000 steps on MNIST)",
    ),
    Claim(
        "bn-weight-scale",
        "Batch norm makes training insensitive to the initial weight scale.",
        "CS231n assignment 2, BatchNormalization.ipynb",
        "weight-scale",
        measures.weight_scale_insensitive,
        setting={"dataset": "fashion-mnist", "num_scales": 10},
        shown=("hidden_dims", "scale_min", "scale_max", "num_scales", "num_training"),
        note="sensitivity measured as the mean shortfall, over the scales, of the best "
        "validation accuracy from the best either net reached at any scale",
    ),
    Claim(
        "bn-fixes-bad-init",
        "A badly scaled init saturates tanh units and stalls training; batch norm trains from "
        "the same bad init.",
        "Karpathy 2022, makemore part 3",
        "init-diagnostics",
        measures.bn_fixes_bad_init,
        setting={"dataset": "fashion-mnist", "num_training": 20_000, "norm_init": "bad"},
        quick={"norm_init": "bad"},
        shown=("hidden_dims", "bad_weight_scale", "norm_init", "num_training", "num_epochs"),
        note="saturation: the share of tanh outputs with |t| > 0.97 on the first batch, mean "
        "over the hidden layers; training: final validation accuracy",
    ),
    Claim(
        "bn-small-batch",
        "Batch norm degrades at small batch sizes while layer and group norm do not.",
        "CS231n assignment 2 (layer norm); Wu & He 2018, Figure 1",
        "renorm",
        measures.small_batch_degrades,
        setting=_BATCH_SWEEP,
        quick=_BATCH_SWEEP_QUICK,
        shown=_BATCH_SHOWN,
        note="test accuracy at the best validation epoch; 'do not' read as 'degrade less than "
        "batch norm' (each drop from the largest batch to the smallest); every batch size "
        "trains the same epochs at a learning rate scaled with the batch, as Wu & He do, so "
        "a small batch takes more steps",
    ),
    Claim(
        "bn-smooths-landscape",
        "Batch norm makes the loss landscape smoother: the loss and its gradient change less "
        "along the gradient.",
        "Santurkar et al. 2018, §3.2, Figure 4",
        "landscape",
        measures.landscape_smoother,
        setting={"dataset": "fashion-mnist", "num_training": 10_000},
        shown=("hidden_dims", "learning_rates", "num_training", "num_epochs"),
        note="per seed, the mean over the learning rates of log10(value without / with batch "
        "norm) of the median loss band, gradient change and effective β-smoothness, each > 0",
    ),
    Claim(
        "noisy-bn-trains",
        "Batch norm with injected, ever-changing covariate shift still trains about as well as "
        "batch norm, and better than no normalization.",
        "Santurkar et al. 2018, §2.1, Figure 2",
        "noisy-bn",
        measures.noisy_bn_trains,
        setting={"dataset": "fashion-mnist"},
        shown=("hidden_dims", "num_training", "num_epochs"),
        note=f"test accuracy at the best validation epoch; 'about as well': within "
        f"±{measures.ACCURACY_MARGIN} (equivalence margin); the shift: mean per-step change of "
        "the layers' input moments",
    ),
    Claim(
        "bn-larger-lr",
        "Batch norm lets the network train at a larger learning rate.",
        "Bjorck et al. 2018, §2-3",
        "lr-stability",
        measures.larger_learning_rate,
        setting={
            "dataset": "fashion-mnist",
            "learning_rates": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
        },
        shown=("hidden_dims", "learning_rates", "num_training", "num_epochs"),
        note="the largest rate of the grid at which the run's loss stays finite and ends below "
        "half of a uniform guess's, compared on log10",
    ),
    Claim(
        "precise-bn",
        "Precise population statistics give higher test accuracy than the EMA of batch statistics.",
        "Wu & Johnson 2021, §3",
        "population-stats",
        measures.precise_beats_ema,
        setting=_POPULATION,
        shown=_POPULATION_SHOWN,
        note=f"final test accuracy, precise BN over the most images against the EMA with "
        f"λ={measures.DEFAULT_EMA} (normlab's default, PyTorch's momentum=0.1)",
    ),
    Claim(
        "bn-train-test-inconsistency",
        "With a small normalization batch, population statistics at test time raise the error "
        "over the batch statistics the net was trained with.",
        "Wu & Johnson 2021, §5",
        "population-stats",
        measures.population_inconsistency,
        setting=_POPULATION,
        shown=_POPULATION_SHOWN,
        note="validation error at the smallest ghost batch size V, the same net evaluated both "
        "ways",
    ),
    Claim(
        "renorm-small-batch",
        "Batch renormalization recovers much of batch norm's small-batch accuracy.",
        "Ioffe 2017, §4.2, Figure 2",
        "renorm",
        measures.renorm_recovers,
        setting=_BATCH_SWEEP,
        quick=_BATCH_SWEEP_QUICK,
        shown=_BATCH_SHOWN,
        note="test accuracy at the best validation epoch at the smallest batch",
    ),
    Claim(
        "ghost-bn-gap",
        "Ghost batch norm narrows the generalization gap of large-batch training.",
        "Hoffer, Hubara & Soudry 2017, §4, Table 1",
        "ghost-bn",
        measures.ghost_narrows_gap,
        setting={
            "dataset": "digits",
            "batch_size": 256,
            "ghost_sizes": [8, 32, 256],
            "num_filters": [8, 16],
            "hidden_dims": [32],
            "num_epochs": 60,
        },
        shown=("batch_size", "ghost_sizes", "num_filters", "num_epochs"),
        note="gap = final training minus validation accuracy, plain batch norm over the batch "
        "against the smallest ghost batch; on the digits: a large batch needs hundreds of steps "
        "to open a gap, and on Fashion-MNIST the ConvNet took over a minute of CPU a run here "
        "(20 epochs of 4096 images in batches of 1024)",
    ),
    Claim(
        "rmsnorm-matches",
        "RMSNorm matches layer norm's accuracy at a lower cost per step.",
        "Zhang & Sennrich 2019, §5",
        "rmsnorm",
        measures.rmsnorm_matches,
        setting={"dataset": "fashion-mnist"},
        shown=("hidden_dims", "num_training", "num_epochs", "batch_size"),
        note=f"'matches': test accuracies within ±{measures.ACCURACY_MARGIN} (equivalence "
        "margin, the whole 95% interval inside it); cost: normlab's own kernels on this CPU",
    ),
)


def get_claims(only: tuple[str, ...] | list[str] = ()) -> list[Claim]:
    """The claims named in ``only`` (all when empty), in catalog order.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    known = [c.name for c in CLAIMS]
    unknown = [n for n in only if n not in known]
    if unknown:
        raise ValueError(
            f"unknown claim {unknown[0]!r}; known claims are {', '.join(known)} "
            "(see `normlab claims --list`)"
        )
    return [c for c in CLAIMS if not only or c.name in only]
