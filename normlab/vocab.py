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
"""

from __future__ import annotations

__all__ = ["COLORS", "LABELS", "color", "label", "run_name", "short_label"]

# How figures and sentences name a normalization ("none": no normalization).
LABELS = {
    "none": "no normalization",
    "batchnorm": "batch norm",
    "layernorm": "layer norm",
    "groupnorm": "group norm",
}

# One colour per normalization, the same in every figure.
COLORS = {
    "none": "#7f7f7f",
    "batchnorm": "#1f77b4",
    "layernorm": "#2ca02c",
    "groupnorm": "#d62728",
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
