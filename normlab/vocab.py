"""The presentation vocabulary: what a normalization is called and drawn as, and run names.

The one place for the words and colours that tables, headlines and figures share. It imports
nothing from normlab, so every floor may use it (the experiments write these labels and
colours into ``results.json``, which is all a report reads).

Examples
--------
>>> label("batchnorm"), label("none"), short_label("none")
('batch norm', 'no normalization', 'none')
>>> run_name("groupnorm", bs=8)
'groupnorm/bs=8'
>>> seed_run_name("groupnorm/bs=8", 2, seeds=5)
'groupnorm/bs=8/seed=2'
"""

from __future__ import annotations

__all__ = [
    "COLORS",
    "LABELS",
    "color",
    "label",
    "run_name",
    "seed_outputs",
    "seed_run_name",
    "short_label",
]

# How figures and sentences name a normalization ("none": no normalization).
LABELS = {
    "none": "no normalization",
    "batchnorm": "batch norm",
    "layernorm": "layer norm",
    "groupnorm": "group norm",
    "rmsnorm": "RMSNorm",
    "instancenorm": "instance norm",
    "instancenorm-tracked": "instance norm (tracked)",
    "layernorm2d": "LayerNorm2d",
    "batchrenorm": "batch renorm",
    "ghostbatchnorm": "ghost batch norm",
    "batchnorm-ema": "batch norm (EMA statistics)",
    "batchnorm-frozen": "frozen batch norm",
    "evonorm-b0": "EvoNorm-B0",
    "evonorm-s0": "EvoNorm-S0",
    "darknet": "darknet batch norm",
    "noisybatchnorm": "noisy batch norm",
}

# One colour per normalization, the same in every figure.
COLORS = {
    "none": "#7f7f7f",
    "batchnorm": "#1f77b4",
    "layernorm": "#2ca02c",
    "groupnorm": "#d62728",
    "rmsnorm": "#9467bd",
    "instancenorm": "#8c564b",
    "instancenorm-tracked": "#8c564b",
    "layernorm2d": "#17becf",
    "batchrenorm": "#ff7f0e",
    "ghostbatchnorm": "#bcbd22",
    "batchnorm-ema": "#e377c2",
    "batchnorm-frozen": "#aec7e8",
    "evonorm-b0": "#98df8a",
    "evonorm-s0": "#ff9896",
    "darknet": "#c5b0d5",
    "noisybatchnorm": "#ff7f0e",
}


def label(norm: str) -> str:
    """The display name of a normalization (an unregistered name is its own label)."""
    return LABELS.get(norm, norm)


def short_label(norm: str) -> str:
    """The label in a table's first column: ``'none'`` rather than "no normalization"."""
    return "none" if norm == "none" else label(norm)


def color(norm: str) -> str | None:
    """The colour of a normalization in every figure; None: matplotlib's next colour."""
    return COLORS.get(norm)


def run_name(norm: str, **swept) -> str:
    """The name of a run: its normalization, then each swept value, e.g. ``'none/bs=5'``."""
    return "/".join([norm, *(f"{k}={v}" for k, v in swept.items())])


def seed_run_name(name: str, seed_index: int, seeds: int) -> str:
    """The task name of seed ``seed_index`` (0-based) of run ``name`` in an experiment run
    with ``seeds`` seeds: ``name`` itself with one seed, else ``'name/seed=k'``."""
    return name if seeds == 1 else f"{name}/seed={seed_index}"


def seed_outputs(results: dict, name: str) -> list[dict]:
    """The outputs of run ``name`` in ``results``, one per seed (``results["seeds"]``, 1 when
    absent), in seed order.

    Raises
    ------
    ValueError
        If a seed's output is missing (an incomplete or damaged ``results.json``).
    """
    seeds = results.get("seeds", 1)
    names = [seed_run_name(name, k, seeds) for k in range(seeds)]
    missing = [n for n in names if n not in results.get("runs", {})]
    if missing:
        raise ValueError(
            f"results.json has no run {missing[0]!r}: the file is incomplete or damaged; "
            "rerun the experiment"
        )
    return [results["runs"][n] for n in names]
