import subprocess
import sys

from normlab import __version__
from normlab.cli import main


def test_gradcheck_passes_and_prints_every_layer(capsys):
    assert main(["gradcheck"]) == 0
    out = capsys.readouterr().out
    for layer in [
        "affine",
        "batchnorm (graph)",
        "batchnorm (closed form)",
        "spatial_batchnorm",
        "layernorm",
        "spatial_groupnorm",
        "dropout",
        "sigmoid",
        "tanh",
        "relu",
    ]:
        assert layer in out
    assert " 0 failed" in out and "FAIL" not in out


def test_gradcheck_exits_1_on_failure(monkeypatch, capsys):
    import normlab.layers as L

    real = L.layernorm_backward

    def broken(dout, cache):
        dx, dg, db = real(dout, cache)
        return dx, dg * 2, db

    monkeypatch.setattr(L, "layernorm_backward", broken)
    assert main(["gradcheck"]) == 1
    out = capsys.readouterr().out
    assert "layernorm                    dgamma" in out and "FAIL" in out


def test_console_script_version():
    r = subprocess.run(
        [sys.executable, "-m", "normlab.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.strip() == f"normlab {__version__}"
