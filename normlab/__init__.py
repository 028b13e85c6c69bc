"""normlab: batch normalization, from the derivation to the experiment.

The CS231n layer API written out by hand and verified against PyTorch, fused numba kernels
behind it, networks that train with it, and the classic experiments with figures and an HTML
report. Data flows one way, each floor importing only the ones below it:
:mod:`normlab.layers` (pure ``*_forward(...) -> (out, cache)`` / ``*_backward(dout, cache)``
pairs: affine, activations, conv, pooling, losses and the normalizations, batch, layer, group,
RMS, instance norm and more, as one core on other axes) over :mod:`normlab.kernels` (their
numba kernels; ``NORMLAB_BACKEND=numpy`` switches them off); :mod:`normlab.models`
(``FullyConnectedNet``, ``ConvNet``, the assignments' ``TwoLayerNet`` and
``ThreeLayerConvNet``, a registry for your own normalization) and :mod:`normlab.data`
(``load_dataset("digits" | "mnist" | "fashion-mnist" | "cifar10")``, the 8x8 digits embedded);
:mod:`normlab.solver` (``Solver``, with :mod:`normlab.optim`'s update rules, checkpoints and
exact resume); :mod:`normlab.experiments` and :mod:`normlab.report` (the experiments, locally
or on Dask, and ``report.html``); :mod:`normlab.claims` (published claims about normalization,
each tested by an experiment and given a verdict: ``normlab claims``);
:mod:`normlab.gradient_check` checks any layer pair.

Where to start: ``normlab demo`` (or ``python -m normlab demo``) trains the same deep net
without normalization and with batch, layer and group norm on the embedded digits and writes
``normlab-demo/report.html``; ``normlab --help`` lists the commands. The README has the quick
starts, ``docs/`` the derivations, the conventions (momentum, eps, variance, mapped to PyTorch,
Keras and darknet) and the architecture.

Examples
--------
>>> import numpy as np
>>> from normlab.layers import batchnorm_forward
>>> x = np.random.default_rng(0).normal(5, 3, size=(64, 10))  # (N, D)
>>> out, cache = batchnorm_forward(x, np.ones(10), np.zeros(10), {"mode": "train"})
>>> bool(abs(out.mean()) < 1e-6)
True
"""

__version__ = "0.1.0"
