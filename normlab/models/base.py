"""What FullyConnectedNet and ConvNet share: a chain of blocks, one ``loss``, the Solver contract.

A network is a list of :class:`Block` s, each one numbered layer::

    linear (affine or conv) - [norm] - [activation] - [2x2 max-pool] - [dropout]

followed by the softmax loss. Block ``i`` owns the parameters ``W{i}``, ``b{i}`` and, when
normalized, its normalization's parameters with the same suffix (``gamma{i}``, ``beta{i}``); its
running statistics are the buffers ``running_mean{i}``, ``running_var{i}`` (any registered
buffer name plus ``i``). Parameters are what the optimizer trains (``model.params``); buffers are
never trained (``model.buffers``).

Once built, the parameters are views of one buffer, laid end to end in ``params`` order, so that
an optimizer updates them all in one kernel pass. Nothing rebinds them: the optimizer, best-
parameter restores and checkpoints copy into the arrays. ``loss`` still looks parameters and
buffers up by name on every call and keeps no references of its own.
"""

from __future__ import annotations

import copy
import inspect
import math
import numbers

import numpy as np

from normlab._validate import check_int
from normlab.layers import ACTIVATIONS, affine_backward, dropout_backward, dropout_forward
from normlab.layers.basic import affine_forward_unchecked, affine_param_grads
from normlab.layers.conv import (
    conv_backward,
    conv_forward,
    conv_param_grads,
    max_pool_backward,
    max_pool_forward,
)
from normlab.layers.losses import softmax_cross_entropy
from normlab.layers.weight_standardization import (
    weight_standardize_backward,
    weight_standardize_forward,
)
from normlab.models.registry import NormLayer, layer_groups

WEIGHT_SCALES = ("he", "xavier", "kaiming")
# The gain of 'kaiming' per activation, PyTorch's torch.nn.init.calculate_gain: sqrt(2) for ReLU,
# 5/3 for tanh, 1 for sigmoid and for a layer without activation (the scores layer).
GAINS = {"relu": math.sqrt(2.0), "tanh": 5.0 / 3.0, "sigmoid": 1.0, None: 1.0}


class Block:
    """One layer: linear - [norm] - [activation] - [pool] - [dropout] (see the module docstring).

    Attributes
    ----------
    index : int
        Layer number, the suffix of its parameter and buffer names.
    W, b : str
        Names of the weight and bias in ``model.params``.
    conv_param : dict or None
        ``{'stride', 'pad'}`` of a convolution; None for an affine layer.
    ws : dict or None
        ``ws_param`` of weight standardization (a convolution's filters standardized before
        it is applied, :func:`~normlab.layers.weight_standardize_forward`); None: W as it is.
    norm : NormLayer or None
    norm_params : tuple of str
        Model parameter names of the normalization, in its forward's order (``('gamma1',
        'beta1')``).
    norm_buffers : tuple of (str, str)
        ``(key in norm_param, name in model.buffers)`` pairs.
    norm_param : dict or None
        The dict passed to the normalization forward (mode, buffers, groups, options).
    act : tuple (forward, backward) or None
    pool : dict or None
        ``pool_param`` of a max-pool.
    pool_first : bool
        Whether the block pools before its activation (ReLU, where the two commute).
    dropout : dict or None
        ``dropout_param`` (``p`` is the keep probability).
    """

    __slots__ = (
        "W",
        "act",
        "b",
        "conv_param",
        "dropout",
        "index",
        "norm",
        "norm_buffers",
        "norm_param",
        "norm_params",
        "pool",
        "pool_first",
        "ws",
    )

    def __init__(self, index: int, conv_param: dict | None = None) -> None:
        self.index = index
        self.W, self.b = f"W{index}", f"b{index}"
        self.conv_param = conv_param
        self.ws: dict | None = None
        self.norm: NormLayer | None = None
        self.norm_params: tuple[str, ...] = ()
        self.norm_buffers: tuple[tuple[str, str], ...] = ()
        self.norm_param: dict | None = None
        self.act = None
        self.pool = None
        # ReLU then max pooling, computed as pooling then ReLU: max(relu(x)) = relu(max(x)),
        # and both route each window's gradient to its first maximum with relu'(x) = [x > 0]
        # (a window whose maximum is <= 0 gets 0 either way), so the outputs and gradients are
        # the same numbers with ReLU on a quarter of the elements (2x2 pools). Not for tanh or
        # sigmoid: rounding can tie their outputs where the inputs differ.
        self.pool_first = False
        self.dropout = None


def check_weight_scale(weight_scale):
    """A positive float, or one of :data:`WEIGHT_SCALES`."""
    if isinstance(weight_scale, str):
        if weight_scale not in WEIGHT_SCALES:
            raise ValueError(
                f"unknown weight_scale {weight_scale!r}; use a float > 0 or one of "
                f"{list(WEIGHT_SCALES)}"
            )
        return weight_scale
    if isinstance(weight_scale, bool) or not isinstance(weight_scale, numbers.Real):
        raise ValueError(
            f"expected weight_scale a float > 0 or one of {list(WEIGHT_SCALES)}, got "
            f"{weight_scale!r}"
        )
    if not weight_scale > 0:
        raise ValueError(f"expected weight_scale > 0, got {weight_scale!r}")
    return float(weight_scale)


def init_std(weight_scale, fan_in: int, fan_out: int, activation: str | None = None) -> float:
    """Standard deviation of the initial weights of a layer followed by ``activation``.

    A float is used as is (the assignment's ``N(0, weight_scale^2)``); ``'he'`` is
    ``sqrt(2 / fan_in)`` (He et al. 2015, for ReLU, whatever the activation); ``'xavier'`` is
    ``sqrt(2 / (fan_in + fan_out))`` (Glorot & Bengio 2010, normal variant); ``'kaiming'`` is
    ``gain / sqrt(fan_in)`` with the gain of the layer's activation (:data:`GAINS`: sqrt(2)
    for ReLU, where it equals ``'he'``; 5/3 for tanh; 1 for sigmoid and for the scores layer,
    ``activation`` None), PyTorch's ``kaiming_normal_(w, nonlinearity=activation)`` and the
    init of Karpathy's "makemore part 3" (2022).
    """
    if weight_scale == "kaiming":
        return float(GAINS[activation] / np.sqrt(fan_in))
    if weight_scale == "he":
        return float(np.sqrt(2.0 / fan_in))
    if weight_scale == "xavier":
        return float(np.sqrt(2.0 / (fan_in + fan_out)))
    return float(weight_scale)


class Network:
    """Base of the models: holds params/buffers/rng and runs the block chain.

    Subclasses pass the options every model takes to ``__init__`` (:func:`shared_options`),
    build ``self.blocks`` with :meth:`_add_block` and end with :meth:`_finish` (one parameter
    buffer; their architecture arguments recorded).

    Attributes
    ----------
    params : dict of str to ndarray
        Trainable parameters, all of ``dtype``.
    buffers : dict of str to ndarray
        Running statistics of the normalization layers, ``dtype``.
    rng : np.random.Generator
        Seeded with ``seed``: draws the initial weights, then the dropout masks (unless
        ``dropout_seed`` fixes them).
    dropout_seed : int or None
        When an int, every training pass draws its dropout masks from
        ``np.random.default_rng(dropout_seed)``: the same masks at every call.
    normalization, reg, weight_scale, dtype, seed, activation, groups, norm_options
        The other options every model takes, as checked (``seed``: an int, or None for a
        Generator or fresh entropy), and ``dropout_keep_ratio`` (a float).
    record : set of int
        Layer numbers whose pre-activation (the input of the nonlinearity, after the
        normalization) each forward pass stores in ``activations``. Empty by default.
    activations : dict of int to ndarray
        ``activations[i]`` of shape (N, width) or (N, C, H, W): the last forward pass's
        pre-activation of layer ``i`` for every ``i`` in ``record`` (test-mode passes, such as
        the Solver's accuracy checks, overwrite it too; read it in a Solver callback to see the
        training batch's). The arrays are not copied; they are never modified afterwards.
    probe : callable or None
        ``probe(stage, blk, h)``, when set, is called during every train-mode forward pass of
        :meth:`loss` (``loss(X, y)``; never in test mode) with each stage's output ``h``:
        ``stage`` is ``'input'`` (``blk`` None), then per block ``'linear'`` (the affine or
        conv output, (N, M) or (N, F, H', W')), ``'norm'``, ``'act'`` and ``'dropout'`` for the
        stages the block has. It must not modify ``h`` nor draw from ``rng``. None (the
        default) costs one attribute read per :meth:`loss` call (:mod:`normlab.diagnostics`
        sets it for the iterations it records).
    """

    def __init__(
        self,
        *,
        normalization: str | None,
        reg: float,
        weight_scale: float | str,
        dtype,
        seed,
        activation: str,
        groups: int,
        norm_options: dict | None,
        dropout_keep_ratio: float,
        dropout_seed: int | None,
    ) -> None:
        """Check and keep the options every model takes (the subclasses document them).

        A subclass passes them on with ``super().__init__(**shared_options(locals()))``.
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"expected a floating dtype, got {dtype}")
        if isinstance(reg, bool) or not isinstance(reg, numbers.Real) or not reg >= 0:
            raise ValueError(f"expected reg >= 0, got {reg!r}")
        keep = dropout_keep_ratio
        if isinstance(keep, bool) or not isinstance(keep, numbers.Real) or not 0 < keep <= 1:
            raise ValueError(f"expected dropout_keep_ratio in (0, 1], got {keep!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known are {sorted(ACTIVATIONS)}")
        self.normalization = normalization
        self.reg = float(reg)
        self.weight_scale = check_weight_scale(weight_scale)
        self.dtype = dtype
        self.rng = np.random.default_rng(seed)
        # what get_config records: an int seed, or None (fresh entropy or a Generator)
        self.seed = int(seed) if isinstance(seed, numbers.Integral) else None
        self.activation = activation
        self.groups = check_int("groups", groups)
        self.norm_options = dict(norm_options or {})
        self.dropout_keep_ratio = float(keep)
        self.dropout_seed = check_int("dropout_seed", dropout_seed, 0, allow_none=True)
        self.params: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.blocks: list[Block] = []
        # features of one sample, (D,) or (C, H, W), set by subclasses; None: not checked
        self._input_shape: tuple[int, ...] | None = None
        self.record: set[int] = set()
        self.activations: dict[int, np.ndarray] = {}
        self.probe = None  # fn(stage, blk, h) seeing train-mode passes of loss (see above)
        self._config: dict = {}

    def _finish(self, model: str, **architecture) -> None:
        """End construction: lay the parameters end to end in one buffer, and record what
        :meth:`get_config` returns (the class name, the architecture arguments, then the
        options every model takes)."""
        flat = np.empty(sum(p.size for p in self.params.values()), self.dtype)  # (P,)
        lo = 0
        for k, p in self.params.items():
            view = flat[lo : lo + p.size].reshape(p.shape)
            view[...] = p
            self.params[k] = view
            lo += p.size
        self._config = {
            "model": model,
            **architecture,
            "normalization": self.normalization,
            "reg": self.reg,
            "weight_scale": self.weight_scale,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "activation": self.activation,
            "groups": self.groups,
            "norm_options": self.norm_options,
            "dropout_keep_ratio": self.dropout_keep_ratio,
            "dropout_seed": self.dropout_seed,
        }

    # -- construction ------------------------------------------------------------------------------

    def _add_block(
        self,
        shape: tuple,
        *,
        conv_param: dict | None = None,
        norm: NormLayer | None = None,
        activation: bool = False,
        pool: dict | None = None,
        keep: float = 1.0,
    ) -> Block:
        """Append a block whose weight has ``shape``, (D, M) affine or (F, C, k, k) conv.

        The weights are drawn with :func:`init_std` of the model's ``weight_scale``;
        ``activation`` applies the model's nonlinearity, ``keep < 1`` dropout.
        """
        blk = Block(len(self.blocks) + 1, conv_param)
        if conv_param is None:
            (fan_in, width), fan_out = shape, shape[1]
        else:
            width, ksize = shape[0], math.prod(shape[2:])  # (F, C, k, k): F, k * k
            fan_in, fan_out = shape[1] * ksize, width * ksize
        act = self.activation if activation else None
        w = init_std(self.weight_scale, fan_in, fan_out, act) * self.rng.standard_normal(shape)
        self.params[blk.W] = w.astype(self.dtype)
        self.params[blk.b] = np.zeros(width, self.dtype)
        if norm is not None:
            blk.norm = norm
            suffix = str(blk.index)
            for k, v in norm.init_params(width, self.dtype).items():
                self.params[k + suffix] = v
            blk.norm_params = tuple(k + suffix for k in norm.params)
            options = {**norm.defaults, **self.norm_options}
            kept = self._norm_buffers(norm, options)  # checks the options
            p = {**options, "mode": "train"}
            if norm.groups:
                p["groups"] = layer_groups(self.groups, width)
            if norm.layer_index:
                p["layer"] = blk.index
            for k, v in norm.init_buffers(width, self.dtype, kept).items():
                self.buffers[k + suffix] = v
                p[k] = v
            blk.norm_buffers = tuple((k, k + suffix) for k in kept)
            blk.norm_param = p
        if activation:
            blk.act = ACTIVATIONS[self.activation]
        blk.pool = pool
        blk.pool_first = bool(pool is not None and activation and self.activation == "relu")
        if keep < 1:
            blk.dropout = {"p": keep, "mode": "train", "rng": self.rng, "seed": self.dropout_seed}
        self.blocks.append(blk)
        return blk

    def _norm_buffers(self, norm: NormLayer, options: dict) -> dict:
        """The buffers of a ``norm`` layer with ``options``; ValueError for options the model
        sets itself or the registration refuses."""
        reserved = {"mode", "groups", "layer", *norm.buffers}
        clash = sorted(set(self.norm_options) & reserved)
        if not clash:
            kept = norm.buffers_for(options)
            clash = sorted(set(self.norm_options) & set(kept))
        if clash:
            how = {
                "mode": "the model's loss sets it",
                "groups": "pass groups=... to the model",
                "layer": "the layer number, set by the model",
            }
            fix = "; ".join(f"{k}: {how.get(k, 'a buffer the model keeps')}" for k in clash)
            raise ValueError(f"norm_options may not set {clash}: the model sets them ({fix})")
        return kept

    def get_config(self) -> dict:
        """The JSON-able constructor arguments (``model`` names the class); see ``build_model``."""
        return copy.deepcopy(self._config)

    # -- forward / backward --------------------------------------------------------------------

    def _forward(self, X, mode: str, stop: Block | None = None, probe=None):
        """Run the blocks; return ``(scores, caches)``, or the linear output of block ``stop``.

        ``probe(stage, blk, h)``, when given, sees each stage's output (``stage`` one of
        'input', 'linear', 'norm', 'act', 'dropout'); :meth:`first_nonfinite` uses it.
        """
        params, buffers = self.params, self.buffers
        record = self.record
        h = np.asarray(X).astype(self.dtype, copy=False)
        if h.shape[1:] != self._input_shape:  # one tuple comparison in the common case
            self._check_input(h.shape)
        if probe:
            probe("input", None, h)
        caches = []
        for blk in self.blocks:
            W, b = params[blk.W], params[blk.b]
            c_ws = None
            if blk.conv_param is None:  # shapes are fixed at construction: no per-call checks
                h, c_lin = affine_forward_unchecked(h, W, b)
            else:
                if blk.ws is not None:  # the raw W is the parameter; conv sees W standardized
                    W, c_ws = weight_standardize_forward(W, blk.ws)
                h, c_lin = conv_forward(h, W, b, blk.conv_param)
            if probe:
                probe("linear", blk, h)
            if blk is stop:
                return h, None
            c_norm = c_act = c_pool = c_drop = None
            if blk.norm is not None:
                p = blk.norm_param
                p["mode"] = mode
                for key, name in blk.norm_buffers:
                    p[key] = buffers[name]  # the model's array: updated in place in train mode
                h, c_norm = blk.norm.forward(h, *[params[k] for k in blk.norm_params], p)
                if probe:
                    probe("norm", blk, h)
            if record and blk.index in record:
                self.activations[blk.index] = h
            pool_first = blk.pool_first and not probe  # a probe sees the unpooled activation
            if pool_first:
                h, c_pool = max_pool_forward(h, blk.pool)
            if blk.act is not None:
                h, c_act = blk.act[0](h)
                if probe:
                    probe("act", blk, h)
            if blk.pool is not None and not pool_first:
                h, c_pool = max_pool_forward(h, blk.pool)
            if blk.dropout is not None:
                d = blk.dropout
                d["mode"], d["rng"] = mode, self.rng
                h, c_drop = dropout_forward(h, d)
                if probe:
                    probe("dropout", blk, h)
            caches.append((c_lin, c_ws, c_norm, c_act, c_pool, c_drop))
        return h, caches

    def first_nonfinite(self, X) -> str | None:
        """Where a train-mode forward pass of ``X`` first holds NaN or inf, in words.

        For error messages after a non-finite loss: one more forward pass, checked stage by
        stage, that leaves the model as it was (its ``rng`` and ``buffers`` are restored).

        Parameters
        ----------
        X : ndarray of shape (N, ...)
            The batch whose loss was not finite.

        Returns
        -------
        where : str or None
            E.g. ``'layer 2 (affine output; W2 holds NaN or inf)'``, ``'layer 1 batchnorm
            (batchnorm_forward: non-finite batch statistics in ...)'`` or ``'the input (3
            values, the first at index (5, 2))'``; None when every stage is finite (the loss
            itself overflowed).
        """

        class Found(Exception):
            pass

        at = [None]  # the block being run: a normalization that raises is its

        def probe(stage, blk, h):
            at[0] = blk
            if np.isfinite(h).all():
                return
            if blk is None:
                bad = ~np.isfinite(h)
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                raise Found(f"the input ({int(bad.sum())} values, the first at index {first})")
            what = {"linear": "conv" if blk.conv_param else "affine"}.get(stage, stage)
            what = blk.norm.name if stage == "norm" else what
            names = (blk.W, blk.b, *blk.norm_params)
            bad = [k for k in names if not np.isfinite(self.params[k]).all()]
            held = (
                f"; {', '.join(bad)} {'holds' if len(bad) == 1 else 'hold'} NaN or inf"
                if bad
                else ""
            )
            raise Found(f"layer {blk.index} ({what} output{held})")

        rng_state = self.rng.bit_generator.state
        saved = {k: v.copy() for k, v in self.buffers.items()}
        record, self.record = self.record, set()
        try:
            with np.errstate(all="ignore"):
                self._forward(X, "train", probe=probe)
        except Found as found:
            return str(found)
        except FloatingPointError as err:  # a normalization refused its statistics
            return f"layer {at[0].index} {at[0].norm.name} ({err})"
        finally:
            self.rng.bit_generator.state = rng_state
            for k, v in saved.items():
                np.copyto(self.buffers[k], v)
            self.record = record
        return None

    def _check_input(self, shape: tuple) -> None:
        """Raise ValueError unless an X of ``shape`` fits the first layer.

        An affine first layer (``_input_shape == (D,)``) also takes (N, d1, ..., dk) with
        ``d1 * ... * dk == D``, flattened as in the assignment.
        """
        want = self._input_shape
        if want is None or (len(want) == 1 and len(shape) >= 2 and math.prod(shape[1:]) == want[0]):
            return
        also = f" or (N, d1, ..., dk) with d1*...*dk = {want[0]}" if len(want) == 1 else ""
        raise ValueError(
            f"expected X of shape (N, {', '.join(map(str, want))}){also}, got {tuple(shape)}"
        )

    def loss(self, X, y=None):
        """Scores in test mode, or the loss and its gradients in train mode.

        Parameters
        ----------
        X : ndarray of shape (N, ...)
            Input batch (cast to the model's dtype).
        y : ndarray of shape (N,), optional
            Integer labels. None selects test mode: no dropout, normalizations use their running
            statistics.

        Returns
        -------
        scores : ndarray of shape (N, num_classes)
            When ``y`` is None.
        loss : float
            Mean softmax cross-entropy plus ``0.5 * reg * sum(W**2)`` over the weights ``W{i}``
            (not biases nor normalization parameters); when ``y`` is given.
        grads : dict of str to ndarray
            Gradient of ``loss`` for every entry of ``params``, same shape and dtype.

        Raises
        ------
        ValueError
            If X's features do not fit the first layer, or ``y`` is not N integer labels in
            [0, num_classes).
        """
        if y is None:
            return self._forward(X, "test")[0]
        probe = self.probe
        scores, caches = self._forward(X, "train", probe=probe)
        loss, dout = softmax_cross_entropy(scores, y)
        params, grads = self.params, {}
        first = self.blocks[0]
        for blk, (c_lin, c_ws, c_norm, c_act, c_pool, c_drop) in zip(
            reversed(self.blocks), reversed(caches), strict=True
        ):
            if c_drop is not None:
                dout = dropout_backward(dout, c_drop)
            pool_first = blk.pool_first and not probe  # the order _forward took
            if c_pool is not None and not pool_first:
                dout = max_pool_backward(dout, c_pool)
            if c_act is not None:
                dout = blk.act[1](dout, c_act)
            if pool_first:
                dout = max_pool_backward(dout, c_pool)
            if c_norm is not None:
                dout, *dnorm = blk.norm.backward(dout, c_norm)
                grads.update(zip(blk.norm_params, dnorm, strict=True))
            if blk is first:  # no dx for the input
                param_grads = affine_param_grads if blk.conv_param is None else conv_param_grads
                grads[blk.W], grads[blk.b] = param_grads(dout, c_lin)
            elif blk.conv_param is None:
                dout, grads[blk.W], grads[blk.b] = affine_backward(dout, c_lin)
            else:
                dout, grads[blk.W], grads[blk.b] = conv_backward(dout, c_lin)
            if c_ws is not None:  # d(loss)/d(W standardized) -> d(loss)/d(raw W)
                grads[blk.W] = weight_standardize_backward(grads[blk.W], c_ws)
        if self.reg:
            reg = self.reg
            for blk in self.blocks:
                W = params[blk.W]
                loss += 0.5 * reg * float(np.vdot(W, W))
                grads[blk.W] += reg * W
        return loss, grads


_SHARED = tuple(inspect.signature(Network.__init__).parameters)[1:]  # after self


def shared_options(args: dict) -> dict:
    """The arguments of a model's constructor (its ``locals()`` on entry) that every model
    takes, by name: what :class:`Network` checks and keeps."""
    return {k: args[k] for k in _SHARED}
