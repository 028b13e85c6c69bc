"""Configurations: one dataclass per experiment (commented defaults), and ``TrainConfig``.

Every field is declared with :func:`opt`, whose help text is the field's comment: it is shown by
``normlab ... --help`` and beside the value in the report (``results.json`` carries it). A
subclass gives an inherited setting another default with :func:`field_of`, which keeps its
help text. Each config validates itself in ``__post_init__``. A configuration is saved as
``config.json`` beside every result (:func:`config_to_dict`) and read back with
:func:`config_from_dict`, which checks names and types.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EVERY_NORMALIZATION",
    "ExperimentConfig",
    "TrainConfig",
    "config_from_dict",
    "config_help",
    "config_to_dict",
    "field_of",
    "opt",
    "parse_assignment",
    "require_nonempty",
]


def opt(default: Any, help: str, positive: bool | None = None) -> Any:
    """A dataclass field with a default and its comment (``help``); lists become tuples.

    ``positive`` says whether an :class:`ExperimentConfig` checks that the setting is > 0 where
    it is a number (``weight_scale="he"`` passes): None (default) for integers, alone or in a
    list, which count something and must be >= 1; False for an integer that may be 0 (a seed,
    an index); True for a float that must be > 0 (a learning rate, a scale).
    """
    if isinstance(default, list):
        default = tuple(default)
    return field(default=default, metadata={"help": help, "positive": positive})


def field_of(cls: type, name: str, default: Any = dataclasses.MISSING) -> Any:
    """The setting ``name`` of the config class ``cls``, with another ``default`` if given.

    The help text stays the one ``cls`` declared, so a setting is described once: a subclass
    that needs another default re-declares the field with it, e.g. ``dataset: str =
    field_of(ExperimentConfig, "dataset", "cifar10")`` (the field keeps its place and its flag).
    """
    f = cls.__dataclass_fields__[name]
    value = f.default if default is dataclasses.MISSING else default
    return opt(value, f.metadata["help"], f.metadata.get("positive"))


# The normalizations of the experiments that compare all four.
EVERY_NORMALIZATION = ("none", "batchnorm", "layernorm", "groupnorm")


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings every experiment shares; each experiment subclasses it with its own fields.

    ``__post_init__`` checks every setting as its field declares (:func:`opt`'s ``positive``:
    counts >= 1, rates and scales > 0) and at least one known normalization. A subclass checks
    what its fields cannot say alone in its own ``__post_init__``, after calling this one.
    """

    dataset: str = opt("digits", "digits | mnist | fashion-mnist | cifar10")
    data_dir: str | None = opt(None, "the only folder searched for the dataset files")
    download: bool = opt(True, "download MNIST / Fashion-MNIST if missing (into data_dir or cache)")
    seed: int = opt(0, "root seed: data split, and every run's seed derived from it", False)
    seeds: int = opt(1, "runs of every setting, each from its own seed; mean and spread shown")
    quick: bool = opt(False, "the reduced variant that finishes in seconds")
    normalizations: tuple[str, ...] = opt(("none", "batchnorm"), "normalizations compared")
    diagnostics: int | None = opt(
        None,
        "record diagnostics every N iterations (normlab.diagnostics.Recorder; 0: none): "
        "activation and gradient histograms, saturation, update:data ratios and signal "
        "propagation, drawn in the report",
        False,
    )

    def __post_init__(self) -> None:
        from normlab.models import available_normalizations

        for f in dataclasses.fields(self):
            _check_positive(type(self).__name__, f.name, getattr(self, f.name), f.metadata)
        if self.seed < 0:  # NumPy's SeedSequence refuses it, deep inside the first run
            raise ValueError(f"{type(self).__name__}: expected seed >= 0, got {self.seed!r}")
        d = self.diagnostics
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 0):
            raise ValueError(
                f"{type(self).__name__}: expected diagnostics an integer >= 1 (record every N "
                f"iterations), or 0 or None (no recording), got {d!r}"
            )
        require_nonempty(self, "normalizations")
        known = ["none", *[n for n in available_normalizations() if n is not None]]
        for n in self.normalizations:
            if n not in known:
                raise ValueError(
                    f"{type(self).__name__}: unknown normalization {n!r} in normalizations; "
                    f"known: {', '.join(known)}"
                )


def _check_positive(owner: str, name: str, value: Any, metadata) -> None:
    """An integer setting (or each of a list's) >= 1, a float declared positive > 0."""
    positive = metadata.get("positive")
    values = value if isinstance(value, tuple) else (value,)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if positive is not False and any(v < 1 for v in values):
            raise ValueError(f"{owner}: expected {name} >= 1, got {value!r}")
    elif positive and isinstance(value, float) and not value > 0:
        raise ValueError(f"{owner}: expected {name} > 0, got {value!r}")


def require_nonempty(config: Any, *names: str) -> None:
    """Raise ValueError unless each named list setting has at least one entry."""
    for name in names:
        if not (v := getattr(config, name)):
            raise ValueError(
                f"{type(config).__name__}: expected at least one entry in {name}, got {v!r}"
            )


@dataclass(frozen=True)
class TrainConfig:
    """One model, one dataset, one Solver: the settings of ``normlab train``.

    ``model="fc"`` builds ``FullyConnectedNet(hidden_dims, ...)``; ``model="conv"`` builds
    ``ConvNet`` with ``num_filters`` (one conv - norm - relu - pool block per entry) and
    ``hidden_dims`` as its fully-connected part.
    """

    model: str = opt("fc", "fc (FullyConnectedNet) | conv (ConvNet)")
    hidden_dims: tuple[int, ...] = opt((100, 100, 100), "widths of the hidden affine layers")
    num_filters: tuple[int, ...] = opt((16, 32), "conv model: filters of each conv block")
    filter_size: int = opt(3, "conv model: odd filter size")
    normalization: str | None = opt("batchnorm", "none | batchnorm | layernorm | rmsnorm | ...")
    groups: int = opt(4, "group norm: groups per layer (gcd with the layer width)")
    activation: str = opt("relu", "relu | sigmoid | tanh")
    weight_scale: float | str = opt(2e-2, "std of the initial weights, or he | xavier")
    dropout_keep_ratio: float = opt(1.0, "probability of keeping a unit (1: no dropout)")
    reg: float = opt(0.0, "L2 regularisation strength")
    dataset: str = field_of(ExperimentConfig, "dataset")
    data_dir: str | None = field_of(ExperimentConfig, "data_dir")
    download: bool = field_of(ExperimentConfig, "download")
    num_training: int | None = opt(None, "training images (None: all the split leaves)")
    num_validation: int | None = opt(None, "validation images (None: the dataset's default)")
    update_rule: str = opt("adam", "sgd | sgd_momentum | rmsprop | adam")
    learning_rate: float = opt(1e-3, "initial learning rate")
    lr_decay: float = opt(1.0, "learning rate multiplier after every epoch")
    batch_size: int = opt(50, "minibatch size")
    num_epochs: int = opt(10, "epochs in total (a resumed run continues up to this)")
    augment: str = opt("none", "random flips/shifts of training batches: none | flip,shift2 ...")
    seed: int = opt(0, "seed of the data split, the initial weights and the batches")


def _field_types(cls) -> dict[str, Any]:
    """Resolved type hints of a config class's fields."""
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    """``(inner, True)`` for ``X | None``, else ``(tp, False)``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        inner = rest[0]
        for arm in rest[1:]:
            inner = inner | arm  # e.g. float | str
        return inner, True
    return tp, False


def _a(tp: type) -> str:
    """The type as a phrase: "an integer", "a number"..."""
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(tp, f"of type {getattr(tp, '__name__', tp)}")


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """``value`` (from JSON or a command line) converted to the field type ``tp``."""
    inner, optional = _strip_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() == "none"):
        if optional:
            return None
        raise ValueError(f"expected {name} to be {_a(inner)}, got None")
    origin = typing.get_origin(inner)
    if origin in (typing.Union, types.UnionType):  # e.g. float | str: the first arm that fits
        for arm in typing.get_args(inner):
            try:
                return _coerce(name, arm, value)
            except ValueError:
                continue
        raise ValueError(f"expected {name} to be {_a(inner)}, got {value!r}")
    if origin is tuple:
        item = typing.get_args(inner)[0]
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected {name} to be a list, got {value!r}")
        return tuple(_coerce(name, item, v) for v in value)
    if inner is bool:
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected {name} to be true or false, got {value!r}")
    if inner in (int, float, str):
        if inner is not str and isinstance(value, bool):
            raise ValueError(f"expected {name} to be {_a(inner)}, got {value!r}")
        try:
            out = inner(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected {name} to be {_a(inner)}, got {value!r}") from None
        if inner is int and isinstance(value, float) and out != value:
            raise ValueError(f"expected {name} to be an integer, got {value!r}")
        return out
    return value


def config_to_dict(config: Any) -> dict:
    """The fields of a config dataclass as a JSON-able dict (tuples become lists)."""
    return {
        f.name: list(v) if isinstance(v := getattr(config, f.name), tuple) else v
        for f in dataclasses.fields(config)
    }


def config_from_dict(cls: type, values: dict) -> Any:
    """Build ``cls`` from a dict such as :func:`config_to_dict` wrote.

    Parameters
    ----------
    cls : type
        A config dataclass.
    values : dict
        Field values; missing fields take their defaults.

    Returns
    -------
    config : cls

    Raises
    ------
    ValueError
        For unknown field names (the message lists the known ones) or values of the wrong type.
    """
    types_ = _field_types(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} settings {unknown}; known settings are {sorted(known)}"
        )
    return cls(**{k: _coerce(k, types_[k], v) for k, v in values.items()})


def parse_assignment(cls: type, text: str) -> tuple[str, Any]:
    """Parse ``"name=value"`` into a field name of ``cls`` and a value of its type.

    Lists are written ``1,2,3`` (or space-separated); ``none`` gives None where allowed.
    """
    if "=" not in text:
        raise ValueError(f"expected NAME=VALUE, got {text!r}")
    name, value = (s.strip() for s in text.split("=", 1))
    types_ = _field_types(cls)
    if name not in types_:
        raise ValueError(
            f"unknown {cls.__name__} setting {name!r}; known settings are {sorted(types_)}"
        )
    return name, _coerce(name, types_[name], value)


def config_help(cls: type) -> list[tuple[str, Any, str]]:
    """``(name, default, comment)`` for every field of a config class."""
    return [(f.name, f.default, f.metadata.get("help", "")) for f in dataclasses.fields(cls)]
