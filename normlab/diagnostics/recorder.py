"""``Recorder``: what each layer of a model does during training, every N-th iteration.

A Solver callback. It arms the model's :attr:`~normlab.models.base.Network.probe` for the
training forward pass of the iterations it records only, computes its statistics inside the
probe (no activation is copied) and reads gradients and parameters at the callback.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from normlab.diagnostics.stats import (
    HIST_EDGES,
    PERCENTILES,
    SATURATION,
    activation_name,
    channel_moments,
    distribution,
    param_ratios,
    saturation,
)

FORMAT_VERSION = 1  # of to_dict()
_DIST_KEYS = ("mean", "std", "percentiles", "hist", "under", "over")
_RATIO_KEYS = ("grad_mean", "grad_std", "grad_data", "update_data_log10")
_GRAD_HIST_KEYS = ("grad_hist", "grad_under", "grad_over")  # of the weights (W1, W2...) only
_GRAD_HIST_WHEN = ("ends", "every")  # Recorder(grad_hist=...)


class Recorder:
    """Per-layer activation, saturation, gradient and update statistics, every N-th iteration.

    Pass it to a Solver (``Solver(model, data, callbacks=[rec])``). At every iteration ``i``
    with ``i % every == 0`` (0, every, 2 * every, ...) it records, for each block (layer) of
    the model:

    - ``pre_norm``: the distribution of the linear (affine or conv) output, and ``pre_act``:
      of the input of the nonlinearity (the normalization's output; the linear output again
      when the block has no normalization), each as :func:`~normlab.diagnostics.stats.
      distribution` gives it: mean, std, the 1/15/50/85/99th percentiles, a histogram on the
      fixed bins :data:`~normlab.diagnostics.stats.HIST_EDGES` (60 bins of 0.2 over [-6, 6])
      and the counts below and above them;
    - ``saturation``: of the post-activation t: tanh ``|t| > 0.97``, sigmoid ``t < 0.03 or t >
      0.97``, ReLU ``t == 0`` (zero outputs), as a fraction of all units of the batch (None for
      a block without activation, such as the last one);

    and, for each parameter ``θ`` (``W1``, ``b1``, ``gamma1``...), with ``g`` the iteration's
    gradient and ``Δθ`` the change its optimizer step made: ``grad_mean`` = mean(g),
    ``grad_std`` = std(g), ``grad_data`` = std(g) / std(θ) and ``update_data_log10`` =
    log10(std(Δθ) / std(θ)), θ taken before the step (means and stds over all elements,
    ``ddof=0``, float64); for each weight (``W1``, ``W2``...: a layer's affine or conv
    weight), the gradient histogram (Karpathy's per-layer plot of the weight gradients) at
    the iterations ``grad_hist`` says: ``grad_hist``, the counts of ``g / std(g)`` in the 60
    bins of :data:`~normlab.diagnostics.stats.HIST_EDGES`, that is of ``g`` on the edges
    ``HIST_EDGES * grad_std``, and ``grad_under`` / ``grad_over``, the counts below and above
    (None, all three, at a record without histograms or for a gradient of std 0 or
    non-finite). Bins in units of each gradient's own std because
    gradient scales differ by orders of magnitude between layers and networks: fixed bins
    would squeeze one histogram into a bin and cut another, a log scale would distort the
    shape around 0 (:func:`~normlab.diagnostics.stats.param_ratios`, Notes).

    Parameters
    ----------
    model : normlab.models.base.Network
        A :class:`~normlab.models.FullyConnectedNet` or :class:`~normlab.models.ConvNet`: it
        has ``blocks`` and ``probe``. One Recorder per model (it owns ``model.probe``).
    every : int, default 20
        Iterations between records, >= 1.
    signal_batch : ndarray of shape (N, ...), optional
        When given, :meth:`signal_propagation` runs on it at construction. Otherwise the
        signal-propagation record is taken from the training batch of iteration 0 when it is
        recorded (the weights then are the initial ones).
    grad_hist : {'ends', 'every'}, default 'ends'
        When the weights' gradient histograms are taken: at the first and the last recorded
        iteration (the last that the Solver's ``total_iterations`` lets it foresee; at every
        record when the callback gets no Solver), the two that the report draws; or at every
        record. They are the costly part of a record's parameter statistics (a pass of a
        dozen operations over every gradient: on a [100] * 5 batch-norm MLP, about as much
        as the other gradient and update statistics together), and ``'ends'`` keeps
        recording every 20 iterations within issue 13's 10% of training time.

    Attributes
    ----------
    iterations : list of int
        The recorded iterations.
    layers : dict of str to dict
        Per layer number (``'1'``, ``'2'``...): ``kind`` ('affine' or 'conv'), ``norm``,
        ``activation`` (names or None), ``pre_norm`` and ``pre_act`` (dicts of lists, one entry
        per recorded iteration, under the keys of ``distribution``), ``saturation`` (list).
    params : dict of str to dict
        Per parameter name: ``layer`` (int) and the lists ``grad_mean``, ``grad_std``,
        ``grad_data``, ``update_data_log10``, one entry per recorded iteration; for the
        weights also ``grad_hist`` (a list of 60 ints per recorded iteration, or None),
        ``grad_under`` and ``grad_over`` (ints or None).
    signal : dict or None
        The signal-propagation record (see :meth:`signal_propagation`), None until taken.

    Raises
    ------
    ValueError
        If ``every`` is not an integer >= 1, ``grad_hist`` not one of the two names, or
        ``model`` has no blocks (not a normlab model).

    Notes
    -----
    The Solver calls the Recorder after each step with that step's iteration ``i``, gradients
    and updated parameters. When ``i + 1`` is to be recorded, the Recorder copies the
    parameters (θ before the step) and sets ``model.probe``; the probe sees the next training
    forward pass (never the Solver's test-mode accuracy checks) and computes the activation
    statistics in place; the callback of ``i + 1`` adds the gradient and update statistics and
    takes the probe off. So the iterations not recorded cost one comparison, and training
    numbers are unchanged (the probe reads, copies nothing back and draws no random numbers).
    The first recorded iteration's θ is copied at construction: build the Recorder right
    before training (after restoring a checkpoint). A step that raises and is retried is
    recorded from its last forward pass.

    The histograms, saturation and update:data ratio (against its rule of thumb of about -3,
    i.e. updates a thousandth of the weights) follow A. Karpathy, "Building makemore part 3:
    activations & gradients, BatchNorm" (2022); the signal-propagation record follows A. Brock,
    S. De, S. L. Smith, "Characterizing signal propagation to close the performance gap in
    unnormalized ResNets", ICLR 2021.

    Examples
    --------
    >>> rec = Recorder(model, every=20)  # doctest: +SKIP
    >>> Solver(model, data, callbacks=[rec], num_iterations=200).train()  # doctest: +SKIP
    >>> rec.params["W2"]["update_data_log10"][-1]  # doctest: +SKIP
    -2.9
    >>> json.dumps(rec.to_dict())  # doctest: +SKIP
    """

    def __init__(
        self,
        model,
        every: int = 20,
        signal_batch: np.ndarray | None = None,
        grad_hist: str = "ends",
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(
                f"expected every to be an integer >= 1 (iterations between records), got "
                f"{every!r}; pass e.g. every=20"
            )
        if grad_hist not in _GRAD_HIST_WHEN:
            raise ValueError(
                f"expected grad_hist one of {list(_GRAD_HIST_WHEN)} (gradient histograms at "
                f"the first and last record, or at every record), got {grad_hist!r}"
            )
        if not getattr(model, "blocks", None) or not hasattr(model, "probe"):
            raise ValueError(
                f"expected a normlab model with blocks (FullyConnectedNet, ConvNet), got "
                f"a {type(model).__name__} with none; build the model with normlab.models"
            )
        self.model, self.every, self.grad_hist = model, int(every), grad_hist
        self.iterations: list[int] = []
        self.layers = {str(b.index): _layer_entry(b) for b in model.blocks}
        owner = {n: b.index for b in model.blocks for n in (b.W, b.b, *b.norm_params)}
        weights = {b.W for b in model.blocks}
        self.params = {
            name: {
                "layer": owner.get(name),
                **{k: [] for k in _RATIO_KEYS},
                **{k: [] for k in (_GRAD_HIST_KEYS if name in weights else ())},
            }
            for name in model.params
        }
        self.signal: dict | None = None
        self._sizes = [p.size for p in model.params.values()]  # laid end to end, params order
        self._base = _buffer_of(model.params)  # the (P,) buffer they are views of, or None
        self._probe_fn = self._probe  # one bound method: model.probe is it while armed
        self._before: np.ndarray | None = None  # (P,) θ before the recorded step
        self._pending: dict[int, dict] = {}  # the armed forward pass's statistics per layer
        self._want_signal = False
        self._want_hist = True  # gradient histograms at the armed iteration
        if signal_batch is not None:
            self.signal_propagation(signal_batch)
        self._arm(0)

    # -- the callback and the probe --------------------------------------------------------

    def __call__(self, solver, info: dict) -> None:
        """The Solver callback: commit iteration ``info['iteration']`` if it was recorded,
        then arm the probe if the next one is (and ``solver.total_iterations`` reaches it)."""
        it = info["iteration"]
        if self._before is not None:
            complete = len(self._pending) == len(self.layers)
            if it % self.every == 0 and complete:
                self._commit(it, info["grads"])
            self._before, self._pending = None, {}
            if self.model.probe is self._probe_fn:
                self.model.probe = None
        total = getattr(solver, "total_iterations", None)  # no probe left on after training
        if (it + 1) % self.every == 0 and (total is None or it + 1 < total):
            self._arm(it + 1, total)

    def _params_flat(self) -> np.ndarray:
        """The parameters laid end to end, (P,): their buffer itself (no copy) while every
        parameter is still its view, else a concatenated copy."""
        base = self._base
        if base is not None and all(v.base is base for v in self.model.params.values()):
            return base
        return _flat(self.model.params.values())

    def _arm(self, iteration: int, total: int | None = None) -> None:
        """Copy θ and set the model's probe, for the training step of ``iteration`` (of
        ``total``, when known: the last record takes gradient histograms)."""
        flat = self._params_flat()  # (P,)
        self._before = flat.copy() if flat is self._base else flat
        self._pending = {}
        self._want_signal = self.signal is None and iteration == 0
        last = total is None or iteration + self.every >= total
        self._want_hist = self.grad_hist == "every" or iteration == 0 or last
        self.model.probe = self._probe_fn

    def _probe(self, stage: str, blk, h: np.ndarray) -> None:
        """The statistics of one stage's output ``h``, kept in ``_pending`` (see Network.probe)."""
        if stage == "input":  # a new forward pass: a retried step replaces the failed one's
            self._pending = {}
            return
        if stage == "linear":
            entry = self._pending[blk.index] = {"pre_norm": distribution(h)}
            if blk.norm is None:
                entry["pre_act"] = entry["pre_norm"]
                entry["saturation"] = None
        elif stage == "norm":
            entry = self._pending[blk.index]
            entry["pre_act"] = distribution(h)
        elif stage == "act":
            entry = self._pending[blk.index]
            entry["saturation"] = saturation(self.layers[str(blk.index)]["activation"], h)
            return
        else:
            return
        if self._want_signal:
            entry["signal_" + ("pre_act" if stage == "norm" else "pre_norm")] = channel_moments(h)

    def _commit(self, iteration: int, grads: dict) -> None:
        """Append iteration's pending activation statistics and the parameter ratios."""
        self.iterations.append(iteration)
        for index, entry in self._pending.items():
            layer = self.layers[str(index)]
            for stage in ("pre_norm", "pre_act"):
                for k in _DIST_KEYS:
                    layer[stage][k].append(entry[stage][k])
            layer["saturation"].append(entry.get("saturation"))
        params = self.model.params
        after, grad = self._params_flat(), _flat(grads[k] for k in params)  # (P,), (P,)
        r = param_ratios(grad, self._before, after, self._sizes, self._want_hist)
        hist = r["grad_hist"]  # (K, 62): under, 60 bins, over; -1 for no std; or None
        ratios = [r[k].tolist() for k in ("grad_mean", "grad_std", "grad_data", "update_data")]
        for j, name in enumerate(params):
            out = self.params[name]
            for key, column in zip(_RATIO_KEYS, ratios, strict=True):  # float(r[...][j])
                out[key].append(column[j])
            if "grad_hist" in out:
                ok = hist is not None and hist[j, 0] >= 0
                out["grad_hist"].append(hist[j, 1:-1].tolist() if ok else None)
                out["grad_under"].append(int(hist[j, 0]) if ok else None)
                out["grad_over"].append(int(hist[j, -1]) if ok else None)
        if self._want_signal and iteration == 0:
            self.signal = _signal_record(self._pending, "training batch of iteration 0")

    # -- signal propagation ------------------------------------------------------------------

    def signal_propagation(self, X: np.ndarray) -> dict:
        """Brock et al.'s signal-propagation record of a train-mode forward pass of ``X``.

        Call it before training for the plot at initialization. The model is left as it was:
        its buffers (running statistics) and ``rng`` are restored, its parameters untouched.

        Parameters
        ----------
        X : ndarray of shape (N, ...)
            A batch the model takes (N > 1 for batch statistics).

        Returns
        -------
        signal : dict
            ``source`` (str), ``layers`` (list of L layer numbers) and, for ``pre_norm`` and
            ``pre_act``, ``mean_sq`` (L floats: the mean over channels of the squared channel
            mean) and ``var`` (L floats: the mean over channels of the channel variance),
            channels being the features of (N, D) outputs and the planes of (N, C, H, W)
            ones (statistics over N, H, W; ``ddof=0``). Also kept as :attr:`signal`.

        Raises
        ------
        ValueError
            If ``X`` does not fit the model's first layer.
        """
        model = self.model
        X = np.asarray(X)
        rng_state = model.rng.bit_generator.state
        saved = {k: v.copy() for k, v in model.buffers.items()}
        probe, pending, want = model.probe, self._pending, self._want_signal
        self._want_signal = True
        model.probe = self._probe_fn
        try:
            # labels only feed the loss, which is not read: zeros fit any number of classes
            model.loss(X, np.zeros(len(X), dtype=np.int64))
            self.signal = _signal_record(self._pending, "signal_batch")
        finally:
            model.probe, self._pending, self._want_signal = probe, pending, want
            model.rng.bit_generator.state = rng_state
            for k, v in saved.items():
                np.copyto(model.buffers[k], v)
        return self.signal

    # -- output ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Everything recorded, JSON-safe (``json.dumps`` works).

        Returns
        -------
        record : dict
            ``format_version``, ``every``, ``percentiles`` (the 5 percentile levels),
            ``hist_edges`` (the 61 bin edges; a weight's gradient histogram at record ``j``
            has the edges ``hist_edges * grad_std[j]``), ``saturation`` (what it measures, per
            activation), ``iterations``, ``layers``, ``params`` and ``signal_propagation``
            (:attr:`signal` or None) as the attributes hold them, in plain lists, floats,
            ints, str and None. NaN and infinite floats (a ratio over a parameter of std 0,
            such as a bias or gamma at initialization; log10 of a zero update) are None.
        """
        out = {
            "format_version": FORMAT_VERSION,
            "every": self.every,
            "percentiles": list(PERCENTILES),
            "hist_edges": HIST_EDGES.tolist(),
            "saturation": dict(SATURATION),
            "iterations": self.iterations,
            "layers": self.layers,
            "params": self.params,
            "signal_propagation": self.signal,
        }
        return _json_safe(out)


def _layer_entry(blk) -> dict:
    """The empty record of one block."""
    return {
        "kind": "affine" if blk.conv_param is None else "conv",
        "norm": None if blk.norm is None else blk.norm.name,
        "activation": activation_name(blk.act),
        "pre_norm": {k: [] for k in _DIST_KEYS},
        "pre_act": {k: [] for k in _DIST_KEYS},
        "saturation": [],
    }


def _signal_record(pending: dict, source: str) -> dict:
    """The signal-propagation record of one probed forward pass."""
    layers = sorted(pending)
    out: dict = {"source": source, "layers": layers}
    for stage in ("pre_norm", "pre_act"):
        pairs = [pending[i].get("signal_" + stage) or pending[i]["signal_pre_norm"] for i in layers]
        out[stage] = {"mean_sq": [p[0] for p in pairs], "var": [p[1] for p in pairs]}
    return out


def _buffer_of(params: dict) -> np.ndarray | None:
    """The one 1-d buffer the parameters are views of, laid end to end in ``params`` order (a
    normlab model builds them so), or None."""
    views = list(params.values())
    base = views[0].base if views else None
    if base is None or base.ndim != 1 or base.size != sum(v.size for v in views):
        return None
    start = base.__array_interface__["data"][0]
    offset = 0
    for v in views:
        if v.base is not base or not v.flags.c_contiguous:
            return None
        if v.__array_interface__["data"][0] != start + offset * base.itemsize:
            return None
        offset += v.size
    return base


def _flat(arrays) -> np.ndarray:
    """The arrays raveled and laid end to end: (P,)."""
    return np.concatenate([a.ravel() for a in arrays])


def _json_safe(obj):
    """A copy of nested dicts/lists with non-finite floats as None and NumPy scalars as Python's."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
