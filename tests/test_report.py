"""Reports: rebuilding from results.json, computed headlines, tables, the self-contained page."""

import base64
import json

import pytest

from normlab.cli import main
from normlab.report import headline, load_results, make_figures, render_html, save_results
from normlab.report.tables import format_cell, html_table, text_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--out", str(out)]) == 0
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


def test_headline_is_computed_from_the_results(demo_dir, capsys):
    res = load_results(demo_dir)
    res["threshold"] = 0.99  # nobody reaches it in the quick demo
    for run in res["runs"].values():
        run["val_acc"] = [min(v, 0.98) for v in run["val_acc"]]
    save_results(res, demo_dir)
    assert main(["report", str(demo_dir)]) == 0
    out = capsys.readouterr().out
    assert "did not reach 0.99 validation accuracy in 5 epochs" in out
    page = (demo_dir / "report.html").read_text()
    assert "did not reach 0.99 validation accuracy" in page


def _curves_results(val_none, val_bn, threshold=0.9, epochs=4):
    return {
        "experiment": "bn-vs-baseline",
        "threshold": threshold,
        "config": {"num_epochs": epochs, "normalizations": ["none", "batchnorm"]},
        "runs": {"none": {"val_acc": val_none}, "batchnorm": {"val_acc": val_bn}},
    }


def test_curves_headline_wording():
    r = _curves_results([0.1, 0.5, 0.8, 0.92, 0.95], [0.1, 0.91, 0.95, 0.96, 0.97])
    assert headline(r) == (
        "Batch norm reached 0.90 validation accuracy in 1 epoch, the baseline in 3 epochs."
    )
    r = _curves_results([0.1, 0.2, 0.3, 0.4, 0.5], [0.1, 0.5, 0.92, 0.9, 0.9])
    assert headline(r) == (
        "Batch norm reached 0.90 validation accuracy in 2 epochs, "
        "the baseline did not reach it in 4 epochs."
    )


def test_batch_size_and_small_batch_headlines():
    r = {
        "experiment": "batch-size",
        "batch_sizes": [5, 10, 50],
        "best_val_acc": {"batchnorm": [0.6, 0.7, 0.8], "layernorm": [0.801, 0.79, 0.797]},
    }
    assert headline(r) == (
        "From batch size 50 to 5, best validation accuracy fell from 0.80 to 0.60 with batch "
        "norm and stayed at 0.80 with layer norm."
    )
    r = {
        "experiment": "small-batch",
        "batch_sizes": [2, 64],
        "final_test_acc": {"none": [0.5, 0.6], "groupnorm": [0.9, 0.91]},
    }
    assert headline(r).startswith(
        "From 64 images per batch to 2, test accuracy at the best validation epoch fell from "
        "0.60 to 0.50 without normalization and fell from 0.91 to 0.90 with group norm"
    )


def test_weight_scale_headline_counts_scales():
    r = {
        "experiment": "weight-scale",
        "weight_scales": [1e-4, 1e-2, 1.0],
        "curves": {
            "none": {"best_val_acc": [0.1, 0.9, 0.3]},
            "batchnorm": {"best_val_acc": [0.85, 0.95, 0.8]},
        },
    }
    assert headline(r) == (
        "Best validation accuracy was at least 0.75 at 1 of 3 weight scales without "
        "normalization (scale 1.0e-02) and 3 of 3 weight scales with batch norm "
        "(scales 1.0e-04 to 1.0e+00)."
    )


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


def test_curves_headline_names_divergence_and_ignores_epoch_0():
    r = _curves_results([0.1], [0.1, 0.5, 0.91, 0.92], threshold=0.9, epochs=3)
    r["runs"]["none"]["diverged"] = True
    assert headline(r) == (
        "Batch norm reached 0.90 validation accuracy in 2 epochs, the baseline diverged at epoch 1."
    )
    r = _curves_results([0.1, 0.1], [0.1, 0.1, 0.1], threshold=0.1, epochs=2)
    assert "in 0 epochs" not in headline(r)
    assert "never beat its untrained 0.10" in headline(r)


def test_headlines_when_a_value_stays_or_diverges():
    r = {
        "experiment": "small-batch",
        "batch_sizes": [2, 64],
        "final_test_acc": {"none": [0.8, 0.8], "batchnorm": [None, 0.9], "groupnorm": [0.9, 0.7]},
    }
    assert headline(r) == (
        "From 64 images per batch to 2, test accuracy at the best validation epoch stayed at "
        "0.80 without normalization, fell from 0.90 to n/a (diverged) with batch norm and "
        "rose from 0.70 to 0.90 with group norm."
    )


def test_weight_scale_headline_lists_scales_that_are_not_contiguous():
    r = {
        "experiment": "weight-scale",
        "weight_scales": [1e-4, 1e-2, 1.0],
        "curves": {"none": {"best_val_acc": [0.9, 0.1, 0.9]}},
    }
    assert headline(r).endswith("(scales 1.0e-04 and 1.0e+00).")


def test_diverged_mlp_adam_and_paper_mnist_headlines():
    r = {
        "experiment": "mlp-adam",
        "config": {"num_epochs": 3},
        "runs": {
            "none": {"val_loss": [], "val_acc": [0.1], "diverged": True},
            "batchnorm": {"val_loss": [0.5, 0.4], "val_acc": [0.1, 0.8, 0.9], "diverged": False},
        },
    }
    assert headline(r) == (
        "After 3 epochs, the validation loss was 0.400 with batch norm (accuracy 0.900); "
        "the run without normalization diverged at epoch 1."
    )
    r = {
        "experiment": "paper-mnist",
        "runs": {"none": {"steps": [10, 20], "final_test_acc": 0.1, "diverged": True}},
    }
    assert headline(r) == "The run without normalization diverged."


def test_report_on_incomplete_results_is_one_line(tmp_path, capsys):
    save_results({"experiment": "bn-vs-baseline", "runs": {}, "config": {}}, tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("normlab: error:") and "incomplete" in err and len(err.splitlines()) == 1
