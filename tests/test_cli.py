"""The normlab command: help, demo, --list, one-line errors, train / evaluate / resume."""

import json

import numpy as np
import pytest

from normlab.checkpoint import load_checkpoint
from normlab.cli import build_parser, main
from normlab.experiments import EXPERIMENTS

SUBCOMMANDS = ["demo", "experiment", "train", "evaluate", "report", "gradcheck"]


def _run(argv):
    """``main(argv)``'s exit status, whether it returns or argparse exits."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd, capsys):
    assert _run([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: normlab {cmd}" in out and len(out.splitlines()) > 4


def test_top_level_help_lists_subcommands(capsys):
    assert _run(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in SUBCOMMANDS:
        assert cmd in out


def test_experiment_list(capsys):
    assert main(["experiment", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(EXPERIMENTS)
    assert all(len(ln.split(None, 1)[1]) > 20 for ln in lines)


def test_demo(demo_run):
    out = demo_run.out  # normlab demo --quick --seed 3 (conftest)
    assert demo_run.rc == 0
    header = demo_run.stdout.strip().splitlines()[0]
    for col in ("final val acc", "best val acc", "test acc", "epochs to 0.90", "time (s)"):
        assert col in header
    for norm in ("none", "batch norm", "layer norm", "group norm"):
        assert f"\n{norm} " in demo_run.stdout
    assert f"report: {out / 'report.html'}" in demo_run.stdout
    assert demo_run.stderr.count("best val acc") == 4  # one progress line per run
    res = json.loads((out / "results.json").read_text())
    assert res["seed"] == 3 and sorted(res["runs"]) == [
        "batchnorm", "groupnorm", "layernorm", "none"]  # fmt: skip
    # the demo's point: batch norm learns where the plain deep net barely does
    assert res["runs"]["batchnorm"]["best_val_acc"] > res["runs"]["none"]["best_val_acc"] + 0.3


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("normlab: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def test_unknown_experiment(capsys):
    assert _run(["experiment", "no-such-thing", "--quick"]) != 0
    _one_error_line(capsys, "unknown experiment 'no-such-thing'", "bn-vs-baseline")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["experiment", "demo", "--seeds", "0"], "--seeds: expected seeds >= 1, got 0"),
        (["experiment", "demo", "--seed", "-1"], "--seed: expected seed >= 0, got -1"),
        (["claims", "--only", "bn-trains-faster", "--seeds", "0"], "--seeds: expected seeds"),
    ],
)
def test_a_refused_setting_names_its_flag(argv, message, capsys, tmp_path):
    """Not the config class (DemoConfig) the user never sees; a negative seed is refused
    before NumPy's SeedSequence does it deep inside the first run."""
    assert _run([*argv, "--quick", "--out", str(tmp_path / "out")]) == 2
    _one_error_line(capsys, message)
    assert not (tmp_path / "out").exists()


def test_unknown_dataset(capsys):
    assert _run(["experiment", "bn-vs-baseline", "--dataset", "imagenet"]) != 0
    _one_error_line(capsys, "unknown dataset 'imagenet'", "fashion-mnist")


def test_missing_data_directory(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert _run(["experiment", "bn-vs-baseline", "--quick", "--data-dir", str(missing)]) != 0
    _one_error_line(capsys, str(missing), "does not exist")


def test_data_not_found(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NORMLAB_DATA", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["experiment", "bn-vs-baseline", "--quick", "--dataset", "mnist",
            "--data-dir", str(empty), "--no-download", "--out", str(tmp_path / "o")]  # fmt: skip
    assert _run(argv) != 0
    _one_error_line(capsys, "dataset 'mnist' not found", str(empty), "To get it")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["experiment"], "expected an experiment NAME or --list"),
        (["experiment", "demo", "--quick", "--set", "bogus=1"], "unknown DemoConfig setting"),
        (["experiment", "demo", "--quick", "--set", "num_epochs=x"], "to be an integer"),
        (["experiment", "demo", "--jobs", "0"], "--jobs >= 1"),
        (["report", "/nonexistent/dir"], "no results.json"),
        (["train", "--resume"], "--resume needs --checkpoint"),
        (["train", "--model", "mlp"], "unknown model 'mlp'"),
        (["train", "--augment", "rotate"], "'flip', 'shiftK' (K pixels) or 'none'"),
        (["evaluate", "--checkpoint", "/nonexistent.npz"], "no checkpoint at"),
        (["experiment", "demo", "--quick", "--seed", "x"], "expected seed to be an integer"),
        (["demo", "--seed", "1.5"], "expected seed to be an integer"),
        (["train", "--data-dir", "/nonexistent"], "/nonexistent does not exist (given by --data"),
        (["train", "--download", "false"], "unrecognized arguments: --download"),
    ],
)
def test_other_bad_arguments(argv, needle, capsys):
    assert _run(argv) != 0
    _one_error_line(capsys, needle)


def _params(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k.startswith("model/params/")}


def test_train_resume_evaluate_round_trip(tmp_path, capsys):
    common = ["--hidden-dims", "32,32", "--num-training", "400", "--batch-size", "40", "--quiet"]
    run = tmp_path / "run.npz"
    assert main(["train", "--checkpoint", str(run), "--num-epochs", "2", *common]) == 0
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["hidden_dims"] == [32, 32] and saved["num_epochs"] == 2
    assert main(["train", "--checkpoint", str(run), "--resume", "--num-epochs", "4",
                 "--quiet"]) == 0  # fmt: skip
    full = tmp_path / "full.npz"
    assert main(["train", "--checkpoint", str(full), "--num-epochs", "4", *common]) == 0
    capsys.readouterr()
    a, b = _params(run), _params(full)
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert main(["evaluate", "--checkpoint", str(run)]) == 0
    ev_resumed = capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(full)]) == 0
    assert capsys.readouterr().out == ev_resumed
    assert "digits, last parameters (epoch 4)" in ev_resumed and "test acc 0." in ev_resumed


def test_resume_refuses_changed_settings_and_keeps_the_saved_config(tmp_path, capsys):
    run = tmp_path / "run.npz"
    assert main(["train", "--checkpoint", str(run), "--num-epochs", "1", "--hidden-dims", "16",
                 "--num-training", "300", "--quiet"]) == 0  # fmt: skip
    before = (tmp_path / "run.json").read_text()
    capsys.readouterr()
    assert _run(["train", "--checkpoint", str(run), "--resume", "--num-epochs", "2",
                 "--batch-size", "7", "--seed", "9", "--quiet"]) != 0  # fmt: skip
    _one_error_line(capsys, "cannot resume with changed settings", "batch_size (saved 50, given 7)")
    assert (tmp_path / "run.json").read_text() == before


def test_train_with_augmentation_resumes_with_it(tmp_path, capsys):
    common = ["--hidden-dims", "16", "--num-training", "200", "--batch-size", "40", "--quiet"]
    run, full = tmp_path / "run.npz", tmp_path / "full.npz"
    aug = ["--augment", "flip,shift1"]
    assert main(["train", "--checkpoint", str(run), "--num-epochs", "1", *aug, *common]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["augment"] == "flip,shift1"
    assert load_checkpoint(run).config["augment"] == "Augment(flip=True, shift=1)"
    assert main(["train", "--checkpoint", str(run), "--resume", "--num-epochs", "2",
                 "--augment", "shift1, flip", "--quiet"]) == 0  # fmt: skip
    assert main(["train", "--checkpoint", str(full), "--num-epochs", "2", *aug, *common]) == 0
    plain = tmp_path / "plain.npz"
    assert main(["train", "--checkpoint", str(plain), "--num-epochs", "2", *common]) == 0
    capsys.readouterr()
    a, b, c = _params(run), _params(full), _params(plain)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in a)  # augmentation changed the run


def test_train_from_config_file(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"model": "conv", "num_filters": [4], "hidden_dims": [16],
                               "normalization": "groupnorm", "num_epochs": 1,
                               "num_training": 200}))  # fmt: skip
    ckpt = tmp_path / "conv"
    assert main(["train", "--config", str(cfg), "--checkpoint", str(ckpt), "--quiet",
                 "--batch-size", "20"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "epochs 1;" in out and (tmp_path / "conv.npz").is_file()
    saved = json.loads((tmp_path / "conv.json").read_text())
    assert saved["model"] == "conv" and saved["batch_size"] == 20
    assert saved["normalization"] == "groupnorm"


def test_evaluate_rejects_a_dataset_of_another_shape(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "m.npz"
    assert main(["train", "--checkpoint", str(ckpt), "--num-epochs", "1", "--hidden-dims", "8",
                 "--num-training", "100", "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    from normlab.experiments import train as train_mod

    fake = {"X_train": np.zeros((3, 1, 28, 28), np.float32), "y_train": np.zeros(3, int)}
    monkeypatch.setattr(train_mod, "load_train_data", lambda config: fake)
    assert _run(["evaluate", "--checkpoint", str(ckpt), "--dataset", "mnist"]) != 0
    _one_error_line(capsys, "expects inputs of size 64", "(1, 28, 28)")


def test_parser_builds_train_options_from_the_config():
    import dataclasses

    from normlab.experiments.config import TrainConfig

    args = build_parser().parse_args(["train", "--batch-size", "7"])
    for f in dataclasses.fields(TrainConfig):
        assert hasattr(args, f.name)
    assert args.batch_size == "7" and args.learning_rate is None  # unset: --config or default


def test_diverged_mlp_adam_finishes_and_saves_its_runs(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["experiment", "mlp-adam", "--quick", "--out", str(out)]
    argv += ["--set", "weight_scale=1e20", "--set", "normalizations=none"]
    assert main(argv) == 0
    assert "diverged at epoch 1" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["runs"]["none"]["diverged"] is True


def test_runs_are_saved_before_a_summary_bug(tmp_path, monkeypatch, capsys):
    import dataclasses

    import normlab.experiments as experiments
    from normlab.experiments import mlp_adam

    def broken(config, outputs, seconds):
        raise KeyError("boom")

    exp = dataclasses.replace(mlp_adam.EXPERIMENT, summarize=broken)
    monkeypatch.setattr(experiments, "get_experiment", lambda name: exp)
    out = tmp_path / "out"
    argv = ["experiment", "mlp-adam", "--quick", "--out", str(out), "--set", "num_epochs=1"]
    with pytest.raises(KeyError):
        main(argv)
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["runs"]) == {"none", "batchnorm"}


def test_divergence_in_train_is_one_line(monkeypatch, capsys):
    from normlab.experiments import train as train_mod
    from normlab.solver import NonFiniteLossError

    def diverge(*args, **kwargs):
        raise NonFiniteLossError("loss is nan at iteration 3")

    monkeypatch.setattr(train_mod, "train", diverge)
    assert main(["train", "--dataset", "digits", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "normlab: error: training diverged: loss is nan at iteration 3; "
        "try a smaller learning rate\n"
    )


@pytest.mark.parametrize(
    ("extra", "needle"),
    [(["--scheduler", "notaurl"], "scheme://host:port"), (["--out", "FILE"], "existing file")],
)
def test_bad_scheduler_and_out_fail_before_training(extra, needle, tmp_path, capsys):
    f = tmp_path / "f.txt"
    f.write_text("x")
    extra = [str(f) if e == "FILE" else e for e in extra]
    assert main(["experiment", "demo", "--quick", *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "runs on" not in err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["paper-mnist", "--set", "eval_every=0"], "expected eval_every >= 1, got 0"),
        (["weight-scale", "--set", "num_scales=0"], "expected num_scales >= 1, got 0"),
        (["bn-vs-baseline", "--set", "normalizations=batchnorm,bogus"], "unknown normalization"),
        (["paper-mnist", "--set", "unit=500"], "expected 0 <= unit < 100"),
        (["batch-size", "--set", "batch_sizes=5,0"], "expected batch_sizes >= 1"),
        (["bn-vs-baseline", "--set", "learning_rate=-1"], "expected learning_rate > 0"),
    ],
)
def test_invalid_experiment_settings_fail_before_training(tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    assert _run(["experiment", *args, "--quick", "--out", str(out)]) != 0
    _one_error_line(capsys, needle)
    assert not (out / "results.json").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--no-download"],
        ["evaluate", "--checkpoint", "x.npz", "--no-download"],
        ["experiment", "demo", "--no-download"],
    ],
)
def test_no_download_is_spelled_once_everywhere(argv):
    assert build_parser().parse_args(argv).download is False
    without = [a for a in argv if a != "--no-download"]
    assert build_parser().parse_args(without).download is None  # the config's default: True


def test_dataset_not_found_line_is_built_from_the_fields(monkeypatch, capsys):
    from normlab.data import DatasetNotFoundError
    from normlab.experiments import train as train_mod

    err = DatasetNotFoundError(
        "mnist",
        looked_in=["/a", "/b/mnist"],
        missing=["no such directory", "missing t10k-labels-idx1-ubyte[.gz]"],
        how_to_get="fetch the files",
        downloadable=True,
        download_dir="/b/mnist",
        download_error="https://m/x.gz: mirror down",
    )

    def not_found(*args, **kwargs):
        raise err

    monkeypatch.setattr(train_mod, "train", not_found)
    assert main(["train", "--dataset", "mnist", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "normlab: error: dataset 'mnist' not found (looked in /a, /b/mnist); download into "
        "/b/mnist failed: https://m/x.gz: mirror down. To get it: fetch the files; or pass "
        "--data-dir DIR (the folder holding the files) or set $NORMLAB_DATA to a directory "
        "holding mnist/.\n"
    )


def test_dataset_not_found_in_the_data_dir_given_says_what_it_must_hold(monkeypatch, capsys):
    from normlab.data import DatasetNotFoundError
    from normlab.experiments import train as train_mod

    err = DatasetNotFoundError(
        "mnist", looked_in=["/d"], missing=["missing train-images-idx3-ubyte[.gz]"],
        how_to_get="put the four files into /d", downloadable=True, data_dir="/d",
        expected=["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"],
    )  # fmt: skip

    def not_found(*args, **kwargs):
        raise err

    monkeypatch.setattr(train_mod, "train", not_found)
    assert main(["train", "--dataset", "mnist", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "normlab: error: dataset 'mnist' not found in --data-dir /d (the only folder searched; "
        "it must hold train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz); --no-download was "
        "given, so nothing was downloaded. To get it: put the four files into /d.\n"
    )


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(13, "Permission denied", "/ro/run.npz"),
        ConnectionError("cannot reach the Dask scheduler at tcp://x:1"),
        ValueError("expected batch_size >= 1, got 0"),
    ],
)
def test_user_errors_are_one_line(error, monkeypatch, capsys):
    from normlab.experiments import train as train_mod

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(train_mod, "train", fail)
    assert main(["train", "--quiet"]) == 2
    _one_error_line(capsys, str(error))


@pytest.mark.parametrize(
    "error",
    [
        TypeError("unsupported operand type(s)"),
        RuntimeError("internal invariant broken"),
        KeyError("W1"),
        AttributeError("'NoneType' object has no attribute 'shape'"),
        OSError(5, "Input/output error"),
    ],
)
def test_internal_errors_keep_their_traceback(error, monkeypatch, capsys):
    from normlab.experiments import train as train_mod

    def bug(*args, **kwargs):
        raise error

    monkeypatch.setattr(train_mod, "train", bug)
    with pytest.raises(type(error)):
        main(["train", "--quiet"])
    assert "normlab: error" not in capsys.readouterr().err


def test_a_report_bug_is_not_called_damaged_results(tmp_path, monkeypatch):
    import normlab.report as report

    save = {"experiment": "bn-vs-baseline", "runs": {}, "config": {}, "figures": [], "headline": ""}
    report.save_results(save, tmp_path)

    def bug(results, out_dir):
        raise TypeError("a bug in the figure code")

    monkeypatch.setattr(report, "write_report", bug)
    with pytest.raises(TypeError, match="figure code"):
        main(["report", str(tmp_path)])

    def key_bug(results, out_dir):
        raise KeyError("a bug in the table code")

    monkeypatch.setattr(report, "write_report", key_bug)
    with pytest.raises(KeyError, match="table code"):
        main(["report", str(tmp_path)])


def test_a_second_train_on_a_checkpoint_is_refused_and_the_file_kept(tmp_path, capsys):
    run = tmp_path / "run.npz"
    argv = ["train", "--checkpoint", str(run), "--num-epochs", "1", "--hidden-dims", "8",
            "--num-training", "100", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    before, sidecar = run.read_bytes(), (tmp_path / "run.json").read_text()
    capsys.readouterr()
    assert _run([*argv, "--seed", "5"]) == 2
    _one_error_line(capsys, f"checkpoint {run} already holds a previous run", "--resume",
                    "--overwrite")  # fmt: skip
    assert run.read_bytes() == before and (tmp_path / "run.json").read_text() == sidecar
    assert _run([*argv, "--resume", "--overwrite"]) == 2
    _one_error_line(capsys, "expected --resume or --overwrite, not both")
    assert main([*argv, "--seed", "5", "--overwrite"]) == 0
    assert run.read_bytes() != before
    assert json.loads((tmp_path / "run.json").read_text())["seed"] == 5


def test_an_output_folder_with_results_is_refused_and_overwrite_removes_only_ours(tmp_path, capsys):
    from normlab.report import save_results

    out = tmp_path / "out"
    old = {"experiment": "bn-vs-baseline", "runs": {}, "config": {}, "figures": [],
           "headline": "old"}  # fmt: skip
    save_results(old, out)
    (out / "curves.png").write_bytes(b"a stale figure of another experiment")
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = ["experiment", "mlp-adam", "--quick", "--out", str(out), "--set", "num_epochs=1",
            "--set", "normalizations=none"]  # fmt: skip
    assert _run(argv) == 2
    _one_error_line(capsys, f"output folder {out} already holds a previous run",
                    "pass --resume to continue it or --overwrite to replace it")  # fmt: skip
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main([*argv, "--overwrite"]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"results.json", "config.json", "report.html", "loss_accuracy.png",
                     "runs", "notes.txt"}  # fmt: skip
    assert (out / "notes.txt").read_text() == "mine"
    assert [p.name for p in (out / "runs").iterdir()] == ["none.json"]


def test_an_unwritable_output_folder_fails_before_training(tmp_path, capsys):
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert _run(["demo", "--quick", "--out", str(f / "sub")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write to --out {f / 'sub'}" in err and "runs on" not in err


def test_resume_refuses_another_config_and_needs_a_run(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["experiment", "mlp-adam", "--quick", "--out", str(out), "--set",
            "normalizations=none"]  # fmt: skip
    assert _run([*argv, "--resume"]) == 2
    _one_error_line(capsys, f"nothing to resume in {out}", "run without --resume")
    from normlab.report.results import save_config

    save_config("mlp-adam", {"num_epochs": 9}, out)
    assert _run([*argv, "--resume"]) == 2
    _one_error_line(capsys, f"cannot resume {out} with other settings", "num_epochs (saved 9,")
