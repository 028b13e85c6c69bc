"""Report figures from diagnostics records: each draws a PNG from a real record, runs side by
side, and refuses a malformed record naming what is missing."""

import copy
import json

import numpy as np
import pytest

from normlab.data import load_dataset
from normlab.diagnostics import Recorder
from normlab.models import FullyConnectedNet
from normlab.report.diagnostics import (
    FIGURES,
    activation_histograms,
    diagnostics_figures,
    saturation,
    signal_propagation,
    update_ratios,
)
from normlab.report.figures import render_png
from normlab.solver import Solver

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DRAW = [activation_histograms, update_ratios, saturation, signal_propagation]


def _record(normalization):
    data = load_dataset("digits", num_training=200, num_validation=50, num_test=50)
    model = FullyConnectedNet(
        [20, 20], input_dim=64, num_classes=10, normalization=normalization,
        activation="tanh", seed=0,
    )  # fmt: skip
    rec = Recorder(model, every=2)
    Solver(
        model, data, update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=50,
        num_iterations=6, verbose=False, callbacks=[rec], seed=0,
    ).train()  # fmt: skip
    return json.loads(json.dumps(rec.to_dict()))  # as results.json gives it back


@pytest.fixture(scope="module")
def records():
    return {"none": _record(None), "batchnorm": _record("batchnorm")}


@pytest.mark.parametrize("draw", DRAW, ids=lambda f: f.__name__)
def test_each_figure_draws_a_png_of_one_and_of_several_runs(records, draw):
    for recs in (records, records["batchnorm"]):
        png = render_png(draw(recs))
        assert png.startswith(PNG_MAGIC) and len(png) > 5000


def test_histograms_of_the_pre_normalization_too(records):
    assert render_png(activation_histograms(records, stage="pre_norm")).startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="unknown stage 'post'"):
        activation_histograms(records, stage="post")


def test_all_figures_by_stem(records):
    figs = diagnostics_figures(records)
    assert list(figs) == list(FIGURES)
    no_signal = copy.deepcopy(records)
    no_signal["none"]["signal_propagation"] = None
    assert "diagnostics_signal" not in diagnostics_figures(no_signal)


def _without(rec, path):
    """A deep copy of ``rec`` without the key at the dotted ``path``."""
    out = copy.deepcopy(rec)
    *head, last = path.split(".")
    node = out
    for k in head:
        node = node[k]
    del node[last]
    return out


@pytest.mark.parametrize(
    "draw, path",
    [
        (activation_histograms, "hist_edges"),
        (activation_histograms, "layers.2.pre_act.hist"),
        (update_ratios, "params"),
        (update_ratios, "params.W1.update_data_log10"),
        (saturation, "layers.1.saturation"),
        (saturation, "iterations"),
        (signal_propagation, "signal_propagation.pre_act.var"),
        (signal_propagation, "signal_propagation"),
    ],
)
def test_a_malformed_record_is_refused_naming_what_is_missing(records, draw, path):
    bad = {"none": records["none"], "batchnorm": _without(records["batchnorm"], path)}
    with pytest.raises(ValueError, match=f"'batchnorm' has no '{path}'"):
        draw(bad)


@pytest.mark.parametrize("draw", DRAW, ids=lambda f: f.__name__)
def test_not_a_record_is_refused(records, draw):
    with pytest.raises(ValueError, match="expected a diagnostics record"):
        draw([])
    with pytest.raises(ValueError, match="format_version 7"):
        draw({"x": {**records["none"], "format_version": 7}})
    with pytest.raises(ValueError, match="is a list, not a dict"):
        draw({"x": []})


def test_a_record_of_no_iteration_is_refused(records):
    empty = copy.deepcopy(records["none"])
    empty["iterations"] = []
    with pytest.raises(ValueError, match="no recorded 'iterations'"):
        update_ratios(empty)
    assert np.isfinite(records["none"]["params"]["W1"]["update_data_log10"]).all()


def test_an_experiment_records_and_its_report_draws_the_diagnostics(tmp_path):
    from normlab.cli import main
    from normlab.experiments.demo import DemoConfig

    out = tmp_path / "demo"
    argv = ["experiment", "demo", "--quick", "--set", "num_epochs=1", "--diagnostics", "10"]
    assert main([*argv, "--set", "normalizations=none,batchnorm", "--out", str(out)]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert set(runs) == {"none", "batchnorm"}
    assert all(run["diagnostics"]["every"] == 10 for run in runs.values())
    for stem in FIGURES:
        assert (out / f"{stem}.png").read_bytes().startswith(PNG_MAGIC)
        (out / f"{stem}.png").unlink()
    assert main(["report", str(out)]) == 0  # redrawn from results.json alone
    assert all((out / f"{stem}.png").is_file() for stem in FIGURES)
    assert 'alt="diagnostics_signal"' in (out / "report.html").read_text()
    for bad in (2.5, "20", True, -1):  # refused when built, not inside every task
        with pytest.raises(ValueError, match="expected diagnostics an integer >= 1"):
            DemoConfig(diagnostics=bad)


def test_overwrite_removes_the_diagnostics_figures_too(tmp_path):
    """--overwrite deletes what an experiment wrote: the diagnostics PNGs included, so a rerun
    without --set diagnostics leaves none of the old run's behind."""
    from normlab.report import diagnostics
    from normlab.report.results import DIAGNOSTICS_FIGURES, output_files, remove_outputs

    assert set(diagnostics.FIGURES) == set(DIAGNOSTICS_FIGURES)
    for stem in DIAGNOSTICS_FIGURES:
        (tmp_path / f"{stem}.png").write_bytes(b"png")
    (tmp_path / "notes.png").write_bytes(b"theirs")  # not ours: kept
    assert {p.name for p in output_files(tmp_path)} == {f"{s}.png" for s in DIAGNOSTICS_FIGURES}
    remove_outputs(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.png"]


class _Trained(Exception):
    """Raised by the stand-in Solver run: the task got as far as training."""


@pytest.mark.parametrize("name", sorted(__import__("normlab.experiments").experiments.EXPERIMENTS))
def test_every_experiment_that_trains_passes_diagnostics_on(name, monkeypatch):
    """--diagnostics N reaches the Solver run of every experiment's training tasks: none of them
    drops it silently (each calls training.train_solver, directly or through train_fc)."""
    import sys

    from normlab.experiments import get_experiment
    from normlab.experiments import training as T

    seen = []

    def fake_train_solver(model, data, seed, callbacks=(), diagnostics=None, **options):
        seen.append(diagnostics)
        raise _Trained

    for mod in list(sys.modules.values()):  # the name as each experiment module imported it
        if getattr(mod, "__name__", "").startswith("normlab.experiments") and hasattr(
            mod, "train_solver"
        ):
            monkeypatch.setattr(mod, "train_solver", fake_train_solver)
    assert T.train_solver is fake_train_solver
    exp = get_experiment(name)
    config = exp.quick(exp.config_cls(dataset="digits", diagnostics=7))
    trains = False
    for spec in exp.runs(config):
        try:
            exp.run_task(config, spec.params, 0)
        except _Trained:
            trains = True
    assert trains, f"{name}: no task reached the Solver"
    assert set(seen) == {7}, f"{name}: diagnostics passed as {seen}"


def test_a_single_record_still_draws_its_points(records):
    """A run recorded once (a sweep's largest batch, a short run) has one point per curve: it
    gets markers, or its panel would be empty."""
    import copy

    from normlab.report.diagnostics import saturation, update_ratios

    one = copy.deepcopy(records["batchnorm"])
    keep = slice(0, 1)
    one["iterations"] = one["iterations"][keep]
    for p in one["params"].values():
        for k, v in p.items():
            if isinstance(v, list):
                p[k] = v[keep]
    for layer in one["layers"].values():
        layer["saturation"] = layer["saturation"][keep]
    for draw in (update_ratios, saturation):
        lines = [ln for ax in draw({"batchnorm": one}).axes for ln in ax.get_lines()]
        drawn = [ln for ln in lines if len(ln.get_xdata()) == 1]
        assert drawn and all(ln.get_marker() == "o" for ln in drawn)


def test_the_demo_records_by_default_and_diagnostics_0_turns_it_off(monkeypatch, tmp_path):
    """``normlab demo`` shows why the baseline stalls without a flag; ``--diagnostics 0`` is
    no Recorder at all."""
    from normlab.cli import main
    from normlab.experiments import training

    seen = []
    real = training.train_solver

    def stand_in(model, data, seed, callbacks=(), diagnostics=None, **options):
        seen.append(diagnostics)
        raise _Trained

    monkeypatch.setattr(training, "train_solver", stand_in)
    for k, (argv, want) in enumerate(
        (([], 40), (["--diagnostics", "0"], 0), (["--diagnostics", "7"], 7))
    ):
        with pytest.raises(_Trained):
            main(["demo", "--quick", "--out", str(tmp_path / str(k)), *argv])
        assert seen.pop() == want
    data = load_dataset("digits", num_training=60, num_validation=20, num_test=20)
    model = FullyConnectedNet([8], input_dim=64, seed=0)
    out = real(model, data, 0, diagnostics=0, num_iterations=2, batch_size=20)
    assert "diagnostics" not in out and model.probe is None
