"""Training diagnostics: what each layer does, recorded during training.

:class:`Recorder` is a Solver callback recording per-layer activation distributions,
saturation, gradient and update ratios every N-th iteration, and a signal-propagation record at
initialization; :mod:`normlab.diagnostics.stats` holds the statistics of one array.
"""

from normlab.diagnostics.recorder import FORMAT_VERSION, Recorder
from normlab.diagnostics.stats import HIST_EDGES, PERCENTILES, SATURATION

__all__ = ["FORMAT_VERSION", "HIST_EDGES", "PERCENTILES", "SATURATION", "Recorder"]
