"""Reports: rebuilding from results.json, computed headlines, tables, the self-contained page."""

import base64
import json
import shutil

import pytest

from normlab.cli import main
from normlab.experiments import get_experiment
from normlab.report import (
    FORMAT_VERSION,
    headline,
    load_results,
    make_figures,
    render_html,
    save_results,
)
from normlab.report.tables import format_cell, html_table, text_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_dir(demo_run, tmp_path_factory):
    """A copy of the session's quick demo (conftest), which these tests rewrite."""
    assert demo_run.rc == 0
    out = tmp_path_factory.mktemp("demo") / "demo"
    shutil.copytree(demo_run.out, out)
    return out


def test_report_rebuilds_figures_and_page(demo_dir, capsys):
    for f in [*demo_dir.glob("*.png"), demo_dir / "report.html"]:
        f.unlink()
    assert main(["report", str(demo_dir)]) == 0
    out = capsys.readouterr().out
    assert f"report: {demo_dir / 'report.html'}" in out
    png = demo_dir / "curves.png"
    assert png.read_bytes().startswith(PNG_MAGIC)
    page = (demo_dir / "report.html").read_text()
    b64 = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(b64) == png.read_bytes()


def test_report_shows_the_headline_the_experiment_computed(demo_dir, capsys):
    res = load_results(demo_dir)
    res["threshold"] = 0.99  # nobody reaches it in the quick demo
    for run in res["runs"].values():
        run["val_acc"] = [min(v, 0.98) for v in run["val_acc"]]
    res["headline"] = get_experiment("demo").headline(res)  # the experiment words it
    save_results(res, demo_dir)
    assert main(["report", str(demo_dir)]) == 0
    out = capsys.readouterr().out
    assert "did not reach 0.99 validation accuracy in 5 epochs" in out
    page = (demo_dir / "report.html").read_text()
    assert "did not reach 0.99 validation accuracy" in page


def test_unknown_experiment_in_report_layer():
    with pytest.raises(ValueError, match="no headline for experiment 'nope'"):
        headline({"experiment": "nope"})
    with pytest.raises(ValueError, match="no figures for experiment 'nope'"):
        make_figures({"experiment": "nope", "config": {}})


def test_tables():
    table = {
        "columns": ["normalization", "best val acc", "epochs to 0.90 val acc", "weight scale"],
        "rows": [["none", 0.5, None, 1e-4], ["<b>", 0.91234, 3, 1.0]],
    }
    text = text_table(table).splitlines()
    assert text[0].split("  ")[0] == "normalization" and set(text[1]) <= {"-", " "}
    assert "not reached" in text[2] and "1.00e-04" in text[2] and "0.912" in text[3]
    page = html_table(table)
    assert "&lt;b&gt;" in page and "<b>" not in page and page.count("<tr>") == 3
    assert format_cell(None, "best val acc") == "n/a" and format_cell(True) == "yes"


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results.json"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a normlab results file"):
        load_results(tmp_path)


def test_page_is_self_contained_with_environment(demo_dir):
    res = load_results(demo_dir)
    page = render_html(res, {"x": PNG_MAGIC + b"fake"})
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page and "<script" not in page
    env = res["environment"]
    for value in (env["python"], env["numpy"], env["numba"], env["cpu"]):
        assert str(value) in page
    assert "wall time (s)" in page and str(res["wall_time_s"]) in page
    assert headline(res) in page.replace("&#x27;", "'")


def test_save_results_writes_strict_json(tmp_path):
    res = {"experiment": "x", "config": {"seed": 1}, "runs": {"a": {"loss": [1.0, float("nan")]}}}
    save_results(res, tmp_path)
    back = json.loads((tmp_path / "results.json").read_text())
    assert back["runs"]["a"]["loss"] == [1.0, None]
    assert json.loads((tmp_path / "config.json").read_text()) == {
        "experiment": "x", "config": {"seed": 1}}  # fmt: skip


def test_report_on_incomplete_results_is_one_line(tmp_path, capsys):
    save_results({"experiment": "bn-vs-baseline", "runs": {}, "config": {}}, tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("normlab: error:") and "incomplete" in err and len(err.splitlines()) == 1


def test_report_on_a_figure_without_its_data_is_one_line(tmp_path, capsys):
    line = {"run": "none", "y": "val_acc", "label": "none", "color": None, "fmt": "o-",
            "ms": 3, "first": 0, "diverged": None}  # fmt: skip
    panel = {"kind": "curves", "title": "t", "xlabel": "x", "ylabel": "y", "legend": True,
             "x": "epoch", "lines": [line]}  # fmt: skip
    figure = {"name": "f", "panels": [panel], "width": 4, "height": 3, "sharey": False}
    results = {"experiment": "bn-vs-baseline", "runs": {"none": {"train_acc": [0.5]}},
               "config": {}, "figures": [figure], "headline": "h"}  # fmt: skip
    save_results(results, tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("normlab: error:") and "no 'val_acc' that a figure declares" in err
    assert len(err.splitlines()) == 1


def test_import_report_loads_no_training():
    """A report reads results only: no experiment, Solver, optimizer, model, kernel or numba."""
    import subprocess
    import sys

    code = (
        "import sys, normlab.report\n"
        "bad = ('normlab.experiments', 'normlab.solver', 'normlab.optim', 'normlab.models',\n"
        "       'normlab.kernels', 'numba')\n"
        "print(sorted(m for m in sys.modules if m.startswith(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_results_carry_what_a_report_needs(demo_dir):
    res = json.loads((demo_dir / "results.json").read_text())
    assert res["format_version"] == FORMAT_VERSION
    assert set(res["config_help"]) == set(res["config"])
    assert res["config_help"]["num_epochs"] == "epochs"
    assert res["headline"] == headline(res)
    names = sorted(f["name"] + ".png" for f in res["figures"])
    assert names == sorted(p.name for p in demo_dir.glob("*.png")) == ["curves.png"]
    page = render_html(res, {})
    assert "root seed: data split, and every run&#x27;s seed derived from it" in page


def test_report_draws_what_the_results_declare(demo_dir):
    """Nothing is looked up by experiment name: a name the report never heard of draws alike."""
    res = load_results(demo_dir)
    res["experiment"] = "an-experiment-added-later"
    figs = make_figures(res)
    assert list(figs) == ["curves"]
    axes = figs["curves"].axes
    assert [ax.get_title() for ax in axes] == [
        "Training loss", "Training accuracy", "Validation accuracy"]  # fmt: skip
    labels = axes[2].get_legend_handles_labels()[1]
    norms = ["no normalization", "batch norm", "layer norm", "group norm"]
    assert labels == [*norms, f"target {res['threshold']:.2f}"]


@pytest.mark.parametrize(
    "version, needles",
    [
        (None, ["format version 1", "older normlab", "rerun the experiment"]),
        (1, ["format version 1", "rerun the experiment"]),
        (FORMAT_VERSION + 1, [f"format version {FORMAT_VERSION + 1}", "upgrade normlab"]),
        ("2", ["format version '2'"]),
    ],
)
def test_results_of_another_format_version_are_refused(
    version, needles, demo_dir, tmp_path, capsys
):
    res = json.loads((demo_dir / "results.json").read_text())
    res.pop("format_version")
    if version is not None:  # None: a file written before format_version existed
        res["format_version"] = version
    (tmp_path / "results.json").write_text(json.dumps(res))
    with pytest.raises(ValueError) as err:
        load_results(tmp_path)
    for needle in needles:
        assert needle in str(err.value)
    assert main(["report", str(tmp_path)]) == 2
    line = capsys.readouterr().err
    assert line.startswith("normlab: error:") and needles[0] in line and line.count("\n") == 1


def test_swept_values_label_a_log_axis_alone(tmp_path):
    """batch-size's axis read '3x10^1 4x10^1 50' when the log axis kept its minor labels."""
    from normlab.experiments import get_experiment, run_experiment
    from normlab.report import make_figures

    exp = get_experiment("batch-size")
    results = run_experiment(exp, exp.quick(exp.config_cls(dataset="digits")))
    fig = make_figures(results)["best_val_acc_vs_batch_size"]
    fig.canvas.draw()  # tick labels are set when drawn
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels(minor=True)]
    assert not any(labels), labels
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "10", "50"]
