"""docs/architecture.md, held against the code: the floors, and its three recipes followed."""

import ast
import dataclasses
import pathlib
from dataclasses import dataclass

import numpy as np
import pytest

import normlab

PACKAGE = pathlib.Path(normlab.__file__).parent
# The floors of docs/architecture.md: a module imports from its own floor or the ones below.
FLOORS = {
    "vocab": 0, "_io": 0, "_validate": 0, "_malloc": 0, "augment": 0, "checkpoint": 0,
    "train_state": 0, "divergence": 0, "kernels": 1, "optim": 1, "optimizer": 2, "layers": 2,
    "warmup": 2, "models": 3, "data": 3, "gradient_check": 3, "layer_utils": 3, "solver": 4,
    "experiments": 5, "report": 6, "cli": 7, "__main__": 7,
    "diagnostics": 4, "interop": 3, "claims": 5,
}  # fmt: skip


def _part(dotted: str) -> str | None:
    """The part of the house a ``normlab.x.y`` module belongs to (None: not normlab's)."""
    bits = dotted.split(".")
    return bits[1] if bits[0] == "normlab" and len(bits) > 1 else None


def _imports(path: pathlib.Path) -> set[str]:
    """Every normlab module ``path`` imports, at the top or inside a function."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1])  # a module's package, or an __init__'s own
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package[: len(package) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                out.add(node.module)
    return {m for m in out if m.startswith("normlab.")}


def test_imports_flow_one_way():
    files = sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )
    assert files
    wrong = []
    for path in files:
        here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        assert here in FLOORS, f"{path}: add it to the floors of docs/architecture.md"
        for module in _imports(path):
            there = _part(module)
            if FLOORS[there] > FLOORS[here]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
            if here == "report" and FLOORS[there] > 0 and there != "report":
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module} (reports read results)")
    assert not wrong, "\n".join(wrong)


# -- recipe: add a normalization -----------------------------------------------------------------


def rms_forward(x, gamma, p):
    """RMS norm over the features of each row: (N, D) -> (N, D)."""
    r = 1 / np.sqrt((x * x).mean(axis=1, keepdims=True) + p["eps"])  # (N, 1)
    return gamma * x * r, (x * r, r, gamma, p["eps"])


def rms_backward(dout, cache):
    xh, r, gamma, _ = cache  # (N, D), (N, 1), (D,)
    gx = dout * gamma  # (N, D)
    dx = r * (gx - xh * (gx * xh).mean(axis=1, keepdims=True))
    return dx, (dout * xh).sum(axis=0)


def test_recipe_add_a_normalization():
    from normlab.gradient_check import check_layer
    from normlab.models import FullyConnectedNet, register_normalization, unregister_normalization
    from normlab.solver import Solver

    rng = np.random.default_rng(0)
    x, gamma = rng.normal(2, 3, (6, 5)), rng.normal(1, 0.1, 5)
    rows = check_layer(rms_forward, rms_backward, [x, gamma], kwargs={"p": {"eps": 1e-6}})
    assert all(r.passed for r in rows)
    register_normalization(
        "my_rmsnorm", rms_forward, rms_backward, kind="feature", params={"gamma": 1.0},
        defaults={"eps": 1e-6},
    )  # fmt: skip
    try:
        model = FullyConnectedNet(
            [8], input_dim=4, num_classes=3, normalization="my_rmsnorm", seed=0
        )
        data = {"X_train": rng.normal(size=(40, 4)), "y_train": rng.integers(3, size=40)}
        data |= {"X_val": data["X_train"][:10], "y_val": data["y_train"][:10]}
        solver = Solver(model, data, update_rule="adam", num_epochs=2, batch_size=10, verbose=False)
        solver.train()
        assert len(solver.loss_history) == 8 and any("gamma" in k for k in model.params)
    finally:
        unregister_normalization("my_rmsnorm")


# -- recipe: add an update rule ------------------------------------------------------------------


def nesterov(w, dw, config=None):
    """Nesterov momentum in the CS231n form (v <- mu v - lr dw; w <- w - mu v_old + (1+mu) v)."""
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity", np.zeros_like(w))
    v_next = config["momentum"] * v - config["learning_rate"] * dw
    next_w = w - config["momentum"] * v + (1 + config["momentum"]) * v_next
    config["velocity"] = v_next
    return next_w, config


def test_recipe_add_an_update_rule(tmp_path):
    from normlab.models import FullyConnectedNet
    from normlab.solver import Solver

    rng = np.random.default_rng(1)
    data = {"X_train": rng.normal(size=(40, 4)), "y_train": rng.integers(3, size=40)}
    data |= {"X_val": data["X_train"][:10], "y_val": data["y_train"][:10]}

    def run(num_epochs, **kw):
        model = FullyConnectedNet(
            [8], input_dim=4, num_classes=3, normalization="batchnorm", seed=0
        )
        solver = Solver(
            model, data, update_rule=nesterov, batch_size=10, num_epochs=num_epochs,
            verbose=False, **kw,
        )  # fmt: skip
        solver.train()
        return model, solver

    full_model, full = run(3)
    assert not full.fused and full.rule_name == "nesterov"
    run(2, checkpoint_name=str(tmp_path / "run"))
    model = FullyConnectedNet([8], input_dim=4, num_classes=3, normalization="batchnorm", seed=9)
    with pytest.raises(ValueError, match=r"custom update rule 'nesterov'; pass it again"):
        Solver.from_checkpoint(model, data, tmp_path / "run.npz", num_epochs=3)
    resumed = Solver.from_checkpoint(
        model, data, tmp_path / "run.npz", num_epochs=3, update_rule=nesterov, verbose=False
    )
    resumed.train()
    assert resumed.loss_history == full.loss_history
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], full_model.params[k])


def test_recipe_make_an_update_rule_built_in(monkeypatch):
    from numba import njit

    from normlab import optim
    from normlab.kernels import optim as kernels
    from normlab.optimizer import Optimizer

    @njit
    def _nesterov_kernel(w, g, vel, lr, mu, one_plus_mu):  # the rule's operations, in order
        for i in range(w.shape[0]):
            v = vel[i]
            v_next = mu * v - lr * g[i]
            w[i] = w[i] - mu * v + one_plus_mu * v_next
            vel[i] = v_next

    def fused_nesterov(w, g, state, hyper):
        s, mu = w.dtype.type, float(hyper["momentum"])
        _nesterov_kernel(w, g, state[0], s(hyper["learning_rate"]), s(mu), s(1 + mu))

    monkeypatch.setitem(optim.DEFAULTS, "nesterov", {"learning_rate": 1e-2, "momentum": 0.9})
    monkeypatch.setitem(optim.STATE_KEYS, "nesterov", ("velocity",))
    monkeypatch.setitem(optim.UPDATE_RULES, "nesterov", nesterov)
    monkeypatch.setitem(kernels.KERNELS, "nesterov", fused_nesterov)
    rng = np.random.default_rng(2)
    shapes = {"W": (5, 4), "b": (4,)}
    grads = [{k: rng.standard_normal(s) for k, s in shapes.items()} for _ in range(5)]
    runs = []
    for fused in (True, False):
        params = {k: np.ones(s) for k, s in shapes.items()}
        opt = Optimizer(params, "nesterov", {"learning_rate": 0.1}, fused=fused)
        assert opt.fused == fused
        for g in grads:
            opt.step(params, g)
        runs.append(params)
    for k in shapes:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])  # the kernel is the rule, bit for bit


# -- recipe: add an experiment -------------------------------------------------------------------


def _experiment():
    """A two-run experiment written as the recipe says (its functions at module level)."""
    from normlab.experiments.base import Experiment
    from normlab.experiments.config import ExperimentConfig, opt

    @dataclass(frozen=True)
    class TinyConfig(ExperimentConfig):
        """Settings of ``tiny``."""

        hidden_dims: tuple[int, ...] = opt((16,), "widths of the hidden layers")
        num_epochs: int = opt(2, "epochs")

    return Experiment(
        "tiny", "two small nets", TinyConfig, tiny_runs, tiny_task, tiny_summary,
        lambda c: dataclasses.replace(c, quick=True), tiny_headline, tiny_figures,
    )  # fmt: skip


def tiny_runs(config):
    from normlab.experiments.base import RunSpec

    return [RunSpec(n, {"normalization": n}, seed_key="net") for n in config.normalizations]


def tiny_task(config, params, seed):
    from normlab.experiments.training import build_model, load_data, train_solver

    data = load_data(config, num_training=200)
    model, solver_seed = build_model(
        data, seed, params["normalization"], hidden_dims=config.hidden_dims
    )
    return train_solver(
        model, data, solver_seed, update_rule="adam", batch_size=50, num_epochs=config.num_epochs
    )


def tiny_summary(config, outputs, seconds):
    rows = [[n, o["best_val_acc"], seconds.get(n)] for n, o in outputs.items()]
    table = {"columns": ["normalization", "best val acc", "time (s)"], "rows": rows}
    return {"table": table, "best": {n: o["best_val_acc"] for n, o in outputs.items()}}


def tiny_headline(results):
    best = max(results["best"], key=results["best"].get)
    return f"{best} reached the best validation accuracy, {results['best'][best]:.2f}."


def tiny_figures(config):
    from normlab.experiments import figspec

    lines = [figspec.norm_line(n, "val_acc", run=n) for n in config.normalizations]
    return [figspec.figure("val_acc", [figspec.curves("Validation accuracy", lines)])]


def test_recipe_add_an_experiment(tmp_path):
    from normlab.experiments import run_experiment
    from normlab.report import load_results, write_outputs

    exp = _experiment()
    config = exp.config_cls(normalizations=("none", "batchnorm"))
    results = run_experiment(exp, config)
    assert sorted(results["runs"]) == ["batchnorm", "none"]
    assert results["headline"].endswith(".") and "reached the best" in results["headline"]
    write_outputs(results, tmp_path)
    again = load_results(tmp_path)
    assert again["headline"] == results["headline"]
    assert (tmp_path / "val_acc.png").stat().st_size > 0 and (tmp_path / "report.html").exists()


def test_recipe_an_experiment_in_the_registry_runs_from_the_command_line(
    tmp_path, monkeypatch, capsys
):
    from normlab import experiments
    from normlab.cli import main

    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", _experiment())  # step 2: the registry
    assert main(["experiment", "--list"]) == 0
    assert "tiny" in capsys.readouterr().out
    out = tmp_path / "tiny"
    assert main(["experiment", "tiny", "--quick", "--dataset", "digits", "--out", str(out)]) == 0
    first = capsys.readouterr().out
    (out / "val_acc.png").unlink()
    assert main(["report", str(out)]) == 0  # step 3: redrawn from results.json alone
    assert (out / "val_acc.png").exists()
    headline = capsys.readouterr().out.splitlines()[0]
    assert "reached the best validation accuracy" in headline and headline in first
