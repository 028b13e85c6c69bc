"""``'noisybatchnorm'``: batch norm followed by noise that shifts every layer's output
distribution at every training step (Santurkar et al. 2018, section 2.1).

Registered for both kinds when :mod:`normlab.models` is imported. Each layer is
:func:`~normlab.layers.noisy.noisy_batchnorm_forward`: batch norm, then, in train mode, the
per-channel affine map ``out = scale * bn(x) + shift`` of the current step, drawn for layer
``l`` (1 first) at its training step ``t`` (0 first) as

* ``shift[c] ~ U(-l * mean_range, l * mean_range)``: a non-zero mean, and
* ``log scale[c] ~ U(-l * log_scale_range, l * log_scale_range)``: a non-unit variance,

independently per channel, from ``np.random.default_rng((noise_seed, l, t))``: new at every
step, wider with depth, the same for a given seed, layer and step (so runs are reproducible and
a resumed run draws what an uninterrupted one would), and different between layers. Test mode
is batch norm's, without noise.

The models tell each layer its number (``norm_param['layer']``, the registration's
``layer_index=True``); a layer called alone (:func:`~normlab.layer_utils.affine_norm_relu_forward`)
without ``'layer'`` is a first layer.

Options (``norm_options``, checked when the model is built): ``noise_seed`` (int >= 0, default
0; experiments derive it from the run seed), ``mean_range`` (>= 0, default 0.25) and
``log_scale_range`` (>= 0, default 0.1); batch norm's ``eps``, ``momentum`` and
``track_running_stats``. Buffers: batch norm's ``running_mean``, ``running_var`` (unless
``track_running_stats=False``) and ``noise_step`` (shape (1,), the train-mode steps taken,
which a checkpoint saves; exact up to 2**24 steps in float32). Folds and precise as batch norm:
the running statistics are of the input, before the noise.

Santurkar et al. perturb each activation of each sample with i.i.d. noise whose mean and
variance are themselves drawn afresh at every step and grow with depth (their Appendix A); here
the noise of one step is the same for every sample of the batch, an affine map per channel, so
that it moves the whole distribution of a layer's output (its per-channel mean and spread)
from step to step, which is what "covariate shift" means, while its backward stays batch
norm's times ``scale``. The ranges are this project's choice, scaled to the small nets here.

Examples
--------
>>> from normlab.models import FullyConnectedNet
>>> net = FullyConnectedNet([16, 16], input_dim=8, normalization="noisybatchnorm",
...                         norm_options={"noise_seed": 3}, seed=0)
>>> sorted(k for k in net.buffers if k.endswith("1"))
['noise_step1', 'running_mean1', 'running_var1']
"""

from __future__ import annotations

import numbers

import numpy as np

from normlab.layers.noisy import NOISE_KEYS, noisy_batchnorm_backward, noisy_batchnorm_forward
from normlab.models.bn_options import bn_configure, counted
from normlab.models.norms import _bn_test_affine
from normlab.models.registry import register_normalization

__all__ = ["NAME", "NOISE_DEFAULTS", "draw_noise"]

NAME = "noisybatchnorm"
NOISE_DEFAULTS = {"noise_seed": 0, "mean_range": 0.25, "log_scale_range": 0.1}
_STEP = "noise_step"


def draw_noise(
    seed: int, layer: int, step: int, C: int, mean_range: float, log_scale_range: float
) -> tuple[np.ndarray, np.ndarray]:
    """The noise of layer ``layer`` at training step ``step``: ``(shift, scale)``, each (C,).

    ``shift ~ U(-layer * mean_range, layer * mean_range)`` and ``log(scale) ~ U(-layer *
    log_scale_range, layer * log_scale_range)`` per channel, from
    ``np.random.default_rng((seed, layer, step))`` (see the module docstring).

    >>> shift, scale = draw_noise(0, 2, 5, 3, 0.25, 0.1)
    >>> bool(np.all(np.abs(shift) <= 0.5)), bool(np.all(np.abs(np.log(scale)) <= 0.2))
    (True, True)
    """
    rng = np.random.default_rng((int(seed), int(layer), int(step)))
    shift = rng.uniform(-layer * mean_range, layer * mean_range, C)  # (C,)
    scale = np.exp(rng.uniform(-layer * log_scale_range, layer * log_scale_range, C))  # (C,)
    return shift, scale


def _check_options(options: dict) -> None:
    """ValueError for a bad ``noise_seed``, ``mean_range`` or ``log_scale_range``."""
    seed = options.get("noise_seed")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(
            f"normalization {NAME!r}: expected norm_options['noise_seed'] an integer >= 0 (the "
            f"seed the noise is drawn from), got {seed!r}"
        )
    for key in ("mean_range", "log_scale_range"):
        v = options.get(key)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < np.inf:
            raise ValueError(
                f"normalization {NAME!r}: expected norm_options[{key!r}] a finite number >= 0 "
                f"(the noise range per layer of depth; 0: none), got {v!r}"
            )


def _configure(bn_configure_fn):
    """Batch norm's configure, plus the noise options and the ``noise_step`` buffer."""

    def configure(options: dict) -> dict:
        _check_options(options)
        if any(k in options for k in NOISE_KEYS):
            raise ValueError(
                f"normalization {NAME!r} draws {list(NOISE_KEYS)} itself at every step; drop "
                "them from norm_options and set noise_seed, mean_range, log_scale_range"
            )
        bn = {k: v for k, v in options.items() if k not in NOISE_DEFAULTS}
        return {**bn_configure_fn(bn), _STEP: lambda C: np.zeros(1)}

    return configure


def noisy_forward(x, gamma, beta, p):
    """The registered forward: this step's noise drawn from ``p``'s options, the layer called,
    the step counted (train mode)."""
    step = p[_STEP]  # (1,) train-mode steps so far
    drop = (*NOISE_DEFAULTS, _STEP, "layer")
    q = {k: v for k, v in p.items() if k not in drop}
    if p["mode"] == "train":
        shift, scale = draw_noise(
            p["noise_seed"],
            p.get("layer", 1),  # set by the models; a layer used alone is a first layer
            int(step[0]),
            x.shape[1],
            p["mean_range"],
            p["log_scale_range"],
        )
        q["noise_shift"], q["noise_scale"] = shift, scale
    out, cache = noisy_batchnorm_forward(x, gamma, beta, q)
    if "num_batches_tracked" in q:  # an int the layer rebinds (momentum=None)
        p["num_batches_tracked"] = q["num_batches_tracked"]
    if p["mode"] == "train":
        step += 1
    return out, cache


def _register() -> None:
    stats = {"running_mean": 0.0, "running_var": 0.0}
    for kind in ("feature", "spatial"):
        register_normalization(
            NAME,
            counted(noisy_forward),
            noisy_batchnorm_backward,
            kind=kind,
            buffers={**stats, _STEP: lambda C: np.zeros(1)},
            defaults={"eps": 1e-5, "momentum": 0.9, **NOISE_DEFAULTS},
            test_affine=_bn_test_affine,
            batch_stats=True,
            configure=_configure(
                bn_configure(NAME, stats, refused={"virtual_batch_size": "no ghost batches"})
            ),
            layer_index=True,
        )


_register()
