"""Training-time augmentation: flips, shifts, the Augment spec, and the Solver's use of it."""

import numpy as np
import pytest
from test_solver import QUIET, TinyNet, assert_same_run, make_data

from normlab.checkpoint import load_checkpoint
from normlab.data import Augment, random_flip, random_shift
from normlab.solver import Solver


def images(n=6, c=2, h=5, w=7, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)


def test_flip_mirrors_exactly_the_drawn_images_and_leaves_input_alone():
    X = images()
    before = X.copy()
    out = random_flip(X, np.random.default_rng(3))
    flipped = np.random.default_rng(3).random(len(X)) < 0.5
    assert 0 < flipped.sum() < len(X)  # the seed draws both kinds
    np.testing.assert_array_equal(out[flipped], X[flipped][..., ::-1])
    np.testing.assert_array_equal(out[~flipped], X[~flipped])
    np.testing.assert_array_equal(X, before)
    np.testing.assert_array_equal(random_flip(X, np.random.default_rng(0), p=1.0), X[..., ::-1])
    np.testing.assert_array_equal(random_flip(X, np.random.default_rng(0), p=0.0), X)


def test_shift_equals_pad_and_crop_at_the_drawn_offsets():
    X, s = images(), 2
    out = random_shift(X, np.random.default_rng(5), max_shift=s)
    dy, dx = np.random.default_rng(5).integers(0, 2 * s + 1, size=(2, len(X)))
    assert len(set(zip(dy, dx, strict=True))) > 1
    h, w = X.shape[2:]
    for i in range(len(X)):
        padded = np.pad(X[i], ((0, 0), (s, s), (s, s)), mode="edge")
        np.testing.assert_array_equal(out[i], padded[:, dy[i] : dy[i] + h, dx[i] : dx[i] + w])
    assert out.dtype == X.dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(random_shift(X, np.random.default_rng(0), max_shift=0), X)


def test_augment_composes_shift_then_flip_with_one_generator():
    X = images()
    got = Augment(flip=True, shift=1)(X, np.random.default_rng(9))
    rng = np.random.default_rng(9)
    expected = random_flip(random_shift(X, rng, 1), rng)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(Augment()(X, np.random.default_rng(0)), X)


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("flip", Augment(flip=True)),
        ("shift3", Augment(shift=3)),
        ("flip,shift2", Augment(flip=True, shift=2)),
        (" shift1 , flip ", Augment(flip=True, shift=1)),
        ("none", Augment()),
    ],
)
def test_spec_and_repr_round_trip(spec, expected):
    aug = Augment.from_spec(spec)
    assert aug == expected
    assert Augment.from_repr(repr(aug)) == aug
    assert Augment.from_spec(aug.spec) == aug
    assert aug.active == (spec.strip() != "none")


def test_bad_input_is_refused_with_what_was_expected():
    with pytest.raises(ValueError, match=r"expected images of shape \(N, C, H, W\), got \(4, 5\)"):
        Augment(flip=True)(np.zeros((4, 5)), np.random.default_rng(0))
    for spec in ("rotate", "", "shift2,shift3", "flip,flip", "none,flip", "shift\u00b2"):
        with pytest.raises(ValueError, match=r"'flip', 'shiftK'.*each at most once.*got"):
            Augment.from_spec(spec)
    with pytest.raises(ValueError, match=r"expected flip a bool, got 1"):
        Augment(flip=1)
    with pytest.raises(ValueError, match=r"shift"):
        Augment(shift=-1)
    with pytest.raises(ValueError, match=r"custom augmentation 'Noise\(\)'; pass it again"):
        Augment.from_repr("Noise()")


class Noise:
    """A custom augmentation for (N, D) data: Gaussian noise drawn from the given rng."""

    def __call__(self, X, rng):
        return X + 0.1 * rng.standard_normal(X.shape)

    def __repr__(self):
        return "Noise()"


def test_solver_feeds_augmented_training_batches_only():
    seen = []
    data = make_data()
    solver = Solver(
        TinyNet(), data, batch_size=20, num_epochs=1, augment=lambda X, rng: -X,
        callbacks=[lambda s, info: seen.append((info["batch_indices"], info["X_batch"]))],
        **QUIET,
    )  # fmt: skip
    solver.train()
    assert len(seen) == 3
    for idx, X_batch in seen:
        np.testing.assert_array_equal(X_batch, -data["X_train"][idx])
    # a lambda's repr holds its address, which the next process would not reproduce
    assert solver.config()["augment"] == (
        "test_augment.test_solver_feeds_augmented_training_batches_only.<locals>.<lambda>"
    )


def test_solver_refuses_a_bad_augment():
    with pytest.raises(ValueError, match=r"expected augment a callable or None, got 'flip'"):
        Solver(TinyNet(), make_data(), augment="flip", **QUIET)
    solver = Solver(TinyNet(), make_data(), augment=lambda X, rng: X[:, :2], **QUIET)
    with pytest.raises(ValueError, match=r"shape \(60, 5\) and dtype float64, got \(\(60, 2\)"):
        solver.train()


def _run(num_epochs, **kw):
    model = TinyNet(dropout=0.3)
    solver = Solver(
        model, make_data(), update_rule="adam", optim_config={"learning_rate": 1e-2},
        batch_size=16, num_epochs=num_epochs, num_train_samples=40, seed=7, augment=Noise(),
        **QUIET, **kw,
    )  # fmt: skip
    return model, solver


def test_resume_with_augmentation_equals_uninterrupted(tmp_path):
    full = _run(4)
    full[1].train()
    _, first = _run(2, checkpoint_name=str(tmp_path / "run"))
    first.train()
    path = tmp_path / "run.npz"
    with pytest.raises(ValueError, match=r"custom augmentation 'Noise\(\)'; pass it again"):
        Solver.from_checkpoint(TinyNet(dropout=0.3), make_data(), path)
    with pytest.raises(ValueError, match=r"augment='Noise\(\)', got augment=None"):
        Solver.from_checkpoint(TinyNet(dropout=0.3), make_data(), path, augment=None)
    model = TinyNet(dropout=0.3, seed=4)
    second = Solver.from_checkpoint(model, make_data(), path, num_epochs=4, augment=Noise())
    second.train()
    assert_same_run(full, (model, second))


def test_builtin_augment_is_rebuilt_from_the_checkpoint(tmp_path):
    X = images(n=40, c=1, h=6, w=6).reshape(40, -1)
    data = {"X_train": X, "y_train": np.arange(40) % 3, "X_val": X[:10], "y_val": np.arange(10) % 3}

    class ImageNet(TinyNet):
        def loss(self, X, y=None):
            return super().loss(X.reshape(len(X), -1), y)

    data["X_train"] = data["X_train"].reshape(40, 1, 6, 6).astype(np.float64)
    aug = Augment(flip=True, shift=1)
    solver = Solver(
        ImageNet(D=36), data, batch_size=10, num_epochs=1, augment=aug,
        checkpoint_name=str(tmp_path / "img"), **QUIET,
    )  # fmt: skip
    solver.train()
    resumed = Solver.from_checkpoint(ImageNet(D=36), data, tmp_path / "img.npz", **QUIET)
    assert resumed.augment == aug


def negate(X, rng):
    return -X


def test_checkpoints_name_a_plain_function_augment_by_module_and_qualname(tmp_path):
    """Not by its repr: the address in it differs in the next process."""
    _, first = _run(1, checkpoint_name=str(tmp_path / "fn"))
    first.augment = negate
    first.train()
    path = tmp_path / "fn.npz"
    assert load_checkpoint(path).config["augment"] == "test_augment.negate"
    model = TinyNet(dropout=0.3)
    resumed = Solver.from_checkpoint(model, make_data(), path, num_epochs=2, augment=negate)
    assert resumed.config()["augment"] == "test_augment.negate"
    with pytest.raises(ValueError, match=r"custom augmentation 'test_augment.negate'"):
        Solver.from_checkpoint(TinyNet(dropout=0.3), make_data(), path)
