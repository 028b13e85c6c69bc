"""warm_up compiles every kernel a training step uses: a step afterwards compiles nothing."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from normlab.warmup import warm_up

# Runs in a fresh interpreter (nothing compiled or loaded yet); prints JSON: the signatures each
# kernel dispatcher gained during the training steps, and the kernels that have signatures.
HEADER = """
import importlib, json, pkgutil, sys
import numpy as np
from numba.core.dispatcher import Dispatcher
import normlab.kernels
from normlab.models import ConvNet, FullyConnectedNet
from normlab.optimizer import Optimizer
from normlab.warmup import warm_up


def dispatchers():
    found = {}
    for info in pkgutil.iter_modules(normlab.kernels.__path__, "normlab.kernels."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            named = isinstance(value, tuple) and hasattr(value, "_fields")
            pairs = value._asdict().items() if named else [(None, value)]
            for field, obj in pairs:  # norm.Kernel: (parallel, serial)
                if isinstance(obj, Dispatcher) and obj.py_func.__module__ == info.name:
                    key = info.name.rsplit(".", 1)[1] + "." + name
                    found[key + ("." + field if field else "")] = obj
    return found


def signatures():
    return {k: sorted(map(str, d.signatures)) for k, d in dispatchers().items()}


def gained(before):
    after = signatures()
    new = {k: sorted(set(after[k]) - set(before[k])) for k in after}
    return {k: v for k, v in new.items() if v}
"""
SCRIPT = (
    HEADER
    + """

def step(model, shape, rule, rng):
    X = rng.standard_normal(shape)  # float64 data, cast by the model
    y = rng.integers(10, size=shape[0])
    loss, grads = model.loss(X, y)  # train mode: forward, loss, backward
    Optimizer(model.params, rule).step(model.params, grads)
    model.loss(X)  # test mode, as the accuracy checks run it


{warm}
before = signatures()
rng = np.random.default_rng(0)
rules = ["sgd", "sgd_momentum", "rmsprop", "adam"]
for dtype in {dtypes}:
    for i, norm in enumerate(["batchnorm", "layernorm", "groupnorm", "rmsnorm"]):
        fc = FullyConnectedNet([8, 6], input_dim=5, normalization=norm, dtype=dtype, seed=0)
        conv = ConvNet((1, 6, 6), num_filters=(4, 4), hidden_dims=(8,), normalization=norm,
                       dtype=dtype, seed=0)
        step(fc, (4, 5), rules[i], rng)
        step(conv, (3, 1, 6, 6), rules[(i + 1) % 4], rng)
    if {large}:  # 2**20 elements per normalized input: the kernels' multi-threaded variants
        for norm in ("batchnorm", "layernorm", "rmsnorm"):
            fc = FullyConnectedNet([256], input_dim=4, normalization=norm, dtype=dtype, seed=0)
            step(fc, (4096, 4), "adam", rng)
        conv = ConvNet((1, 8, 8), num_filters=(4,), hidden_dims=(), normalization="batchnorm",
                       dtype=dtype, seed=0)
        step(conv, (4096, 1, 8, 8), "adam", rng)
used = sorted(k for k, v in signatures().items() if v)
json.dump({"new": gained(before), "used": used}, sys.stdout)
"""
)

# The experiment runner's warm-up, then what its runs do: train float32 models with a Recorder.
RECORDER_SCRIPT = (
    HEADER
    + """
from normlab.diagnostics import Recorder
from normlab.experiments import runner
from normlab.solver import Solver

runner._warm_once()
before = signatures()
rng = np.random.default_rng(0)
for model, shape in [
    (FullyConnectedNet([8, 6], input_dim=5, normalization="batchnorm", dtype=np.float32), (20, 5)),
    (ConvNet((1, 6, 6), num_filters=(4,), hidden_dims=(8,), normalization="batchnorm",
             dtype=np.float32), (20, 1, 6, 6)),
]:
    X, y = rng.standard_normal(shape), rng.integers(10, size=shape[0])
    data = {"X_train": X, "y_train": y, "X_val": X, "y_val": y}
    Solver(model, data, num_epochs=1, batch_size=10, verbose=False,
           callbacks=[Recorder(model, every=1)]).train()
json.dump({"new": gained(before)}, sys.stdout)
"""
)

# The kernels the steps above call (the helpers they call get signatures only when they are
# compiled rather than loaded from the cache).
NORM_KERNELS = ("cols_forward", "cols_backward", "spatial_forward", "spatial_backward")
NORM_KERNELS += ("rows_forward", "rows_backward")
RULES = ("sgd", "sgd_momentum", "rmsprop", "adam")
USED = {f"norm.{k}.{v}" for k in NORM_KERNELS for v in ("parallel", "serial")}
USED |= {f"rms.rms_{k}.{v}" for k in ("forward", "backward") for v in ("parallel", "serial")}
USED |= {"norm.ema_update", "loss.softmax_xent"} | {f"optim._{r}_kernel" for r in RULES}
USED |= {f"pool.{k}_2x2s2" for k in ("forward", "backward")}  # the ConvNet's 2x2 pools
USED |= {"conv.col2im"}  # the ConvNet's second conv layer (the first computes no dx)


def _run(warm: str, large: bool = True, dtypes: str = "(np.float32, np.float64)", **env) -> dict:
    """Run SCRIPT with ``warm`` as its warm-up; ``large``: also steps of 2**20-element layers;
    the models in ``dtypes``."""
    code = SCRIPT.replace("{warm}", warm).replace("{large}", str(large))
    return _python(code.replace("{dtypes}", dtypes), **env)


def _python(code: str, **env) -> dict:
    """The JSON that ``code`` prints, run in a fresh interpreter (default backend unless ``env``
    sets one)."""
    environ = {k: v for k, v in os.environ.items() if k != "NORMLAB_BACKEND"} | env
    res = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_a_training_step_after_warm_up_compiles_nothing():
    """As the experiment runner warms up (float32, layers below the multi-threaded size). The
    full ``warm_up()`` (both dtypes, the 2**20-element variants) is the same code on more
    inputs; on a cold numba cache it compiles for minutes, too long for the suite."""
    out = _run("warm_up((np.float32,), parallel=False)", large=False, dtypes="(np.float32,)")
    assert out["new"] == {}, f"warm_up missed these signatures: {out['new']}"
    serial = {k for k in USED if not k.endswith(".parallel")}
    assert serial <= set(out["used"]), sorted(serial - set(out["used"]))  # the steps ran them


def test_the_runners_warm_up_also_covers_the_recorders_statistics():
    """The demo records diagnostics: without the statistics kernel in the runner's warm-up, its
    first run's time held that kernel's compilation (7.7 s against 0.4 s on an empty cache)."""
    out = _python(RECORDER_SCRIPT)
    assert out["new"] == {}, f"the runner's warm-up missed these signatures: {out['new']}"


def test_with_the_numpy_backend_it_loads_only_what_that_backend_calls():
    out = _run("warm_up()", large=False, NORMLAB_BACKEND="numpy")
    assert out == {"new": {}, "used": ["norm.ema_update"]}  # batch norm's running statistics


def test_one_dtype_may_be_given_alone(monkeypatch):
    monkeypatch.setenv("NORMLAB_BACKEND", "numpy")  # milliseconds
    assert 0 <= warm_up("float32") < 5


@pytest.mark.parametrize("dtypes", [(np.float16,), ("int64",), (None,), ("float32", "floaty")])
def test_dtypes_other_than_float32_and_float64_are_refused(dtypes):
    with pytest.raises(ValueError, match="expected dtypes among float32 and float64"):
        warm_up(dtypes)


def test_runs_are_timed_after_the_kernels_are_compiled(monkeypatch):
    """Issue 10, item 6: the experiment runner warms up once per process before it starts a
    task's clock, and reports the compile time apart."""
    import normlab.diagnostics.stats
    import normlab.warmup
    from normlab.experiments import RunSpec, run_tasks, runner

    calls = []
    monkeypatch.setattr(runner, "_warmed", False)
    monkeypatch.setattr(normlab.warmup, "warm_up", lambda *a, **k: calls.append("warm") or 0.25)
    monkeypatch.setattr(normlab.diagnostics.stats, "distribution", lambda x: calls.append("stats"))

    def task(config, params, seed):
        calls.append("task")
        return {}

    specs = [RunSpec("a"), RunSpec("b")]
    results = run_tasks(task, None, specs, seed=0)
    assert calls == ["warm", "stats", "task", "task"]  # the Recorder's kernel too, then tasks
    first, second = (r.compile_seconds for r in results.values())
    assert first == pytest.approx(0.25, abs=0.05) and second == 0.0
