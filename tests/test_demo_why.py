"""The demo's headline says why the baseline stalls, from its signal-propagation records."""

from __future__ import annotations

from normlab.experiments import demo


def _results(recorded: bool) -> dict:
    def out(var):
        sig = {"pre_act": {"var": var, "mean_sq": [0.0] * len(var)}, "layers": [1, 2, 3, 4]}
        return {"diagnostics": {"signal_propagation": sig}} if recorded else {}

    return {
        "config": {"normalizations": ["none", "batchnorm"], "hidden_dims": [100] * 3},
        "runs": {"none": out([2e-3, 1e-6, 4e-12, 9.0]), "batchnorm": out([0.99, 1.0, 0.98, 3.0])},
    }


def test_why_quotes_the_first_and_last_hidden_layer():
    text = demo.why(_results(recorded=True))
    assert "without normalization is 0.002 in hidden layer 1 and 4e-12 in hidden layer 3" in text
    assert "against 0.99 and 0.98 with batch norm" in text


def test_why_is_silent_without_records():
    assert demo.why(_results(recorded=False)) == ""
