"""SparseAutoencoder: the KL sparsity penalty, its features, its plumbing through the core.

(tests/test_sparse.py is about sparse input matrices.)
"""

import io
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline

from skae import SparseAutoencoder, persistence
from skae._engine import Trainer
from skae._optim import make_optimizer
from skae._sparse_ae import bernoulli_kl
from skae._state import build_network

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


@pytest.fixture(scope="module")
def split(digits):
    X, y = digits
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def fitted(split):
    X_train = split[0]
    return SparseAutoencoder(100, random_state=0).fit(X_train)


def test_bernoulli_kl_is_zero_at_the_target_and_matches_its_formula():
    target = 0.05
    assert float(bernoulli_kl(target, torch.full((7,), target))) == pytest.approx(0, abs=1e-7)
    q = torch.tensor([0.2, 0.01], dtype=torch.float64)
    expected = sum(target * np.log(target / v) + (1 - target) * np.log((1 - target) / (1 - v))
                   for v in (0.2, 0.01))
    assert float(bernoulli_kl(target, q)) == pytest.approx(expected, rel=1e-12)
    # Saturated units (a float32 sigmoid at exactly 0 or 1) give a finite penalty.
    assert np.isfinite(float(bernoulli_kl(target, torch.tensor([0.0, 1.0]))))


def test_held_out_mean_activation_is_near_the_target(fitted, split):
    activations = fitted.transform(split[1])
    assert activations.shape == (split[1].shape[0], 100)
    assert activations.min() >= 0 and activations.max() <= 1
    assert abs(activations.mean() - fitted.sparsity_target) < 0.03


def test_the_target_moves_the_mean_activation(split):
    X_train, X_test = split[:2]
    means = [SparseAutoencoder(40, sparsity_target=target, random_state=0, max_iter=60)
             .fit(X_train).transform(X_test).mean() for target in (0.02, 0.2)]
    assert abs(means[0] - 0.02) < 0.03 and abs(means[1] - 0.2) < 0.03


def test_without_the_penalty_the_mean_activation_is_free(split):
    # The test above could pass by accident if the code sat at the target anyway.
    X_train, X_test = split[:2]
    free = SparseAutoencoder(100, sparsity_weight=0, random_state=0, max_iter=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an overcomplete code without penalty warns
        mean = free.fit(X_train).transform(X_test).mean()
    assert abs(mean - 0.05) > 0.1


def test_the_penalty_is_in_the_loss_and_recorded(fitted):
    # loss = reconstruction + sparsity_weight * 2 / n_features * KL (squared error).
    weight = fitted.sparsity_weight * 2 / fitted.n_features_in_
    assert len(fitted.sparsity_curve_) == len(fitted.loss_curve_) == fitted.n_iter_
    assert_allclose(fitted.loss_curve_, np.add(fitted.reconstruction_curve_,
                                               weight * np.array(fitted.sparsity_curve_)),
                    rtol=1e-5)
    assert fitted.sparsity_curve_[-1] < fitted.sparsity_curve_[0]


def test_components_are_the_code_units_input_weights(fitted, split):
    components = fitted.components_
    assert components.shape == (100, 64) and components.dtype == np.float64
    first = fitted.encoder_[0]
    X = split[1][:5]
    expected = 1 / (1 + np.exp(-(X @ components.T + first.bias.detach().double().numpy())))
    assert_allclose(fitted.transform(X), expected, rtol=1e-6, atol=1e-7)


def test_components_with_hidden_layers_are_the_product_of_the_weights(split):
    model = SparseAutoencoder(10, hidden_layer_sizes=(16,), max_iter=2,
                              random_state=0).fit(split[0])
    first, code = model.encoder_[0], model.encoder_[2]
    expected = (code.weight.detach().double() @ first.weight.detach().double()).numpy()
    assert model.components_.shape == (10, 64)
    assert_allclose(model.components_, expected)


def test_it_trains_through_autograd_and_its_gradients_are_autograds(split):
    model = SparseAutoencoder(8, random_state=0)
    X = torch.as_tensor(split[0][:50], dtype=torch.float32)
    model.n_features_in_ = X.shape[1]
    module = build_network(model._network_architecture(X.shape[1]))
    state = type("State", (), {"module": module})()
    loss_fn = model._loss(state)
    trainer = Trainer(module, loss_fn, make_optimizer(module, 0.01, 0.0), batch_size=50)
    assert trainer.train_step == trainer.autograd_step  # the fast path declines it
    # The penalty's gradient reaches the encoder: compare with a finite difference.
    bias = module.encoder[0].bias
    loss, _ = loss_fn(module, X, None, None)
    (gradient,) = torch.autograd.grad(loss, bias)
    with torch.no_grad():
        bias[0] += 1e-3
        up = loss_fn(module, X, None, None)[0]
        bias[0] -= 2e-3
        down = loss_fn(module, X, None, None)[0]
        bias[0] += 1e-3
    assert float(gradient[0]) == pytest.approx(float(up - down) / 2e-3, rel=2e-2, abs=1e-6)


def stop(record):
    return True  # one epoch, asked for: no ConvergenceWarning


def test_overcomplete_code_warns_only_without_penalty():
    X = np.random.RandomState(0).uniform(size=(60, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        SparseAutoencoder(12, callbacks=[stop]).fit(X)
    with pytest.warns(UserWarning, match="copy its"):
        SparseAutoencoder(12, sparsity_weight=0, callbacks=[stop]).fit(X)


@pytest.mark.parametrize("params, match", [
    ({"sparsity_target": 0}, "sparsity_target"),
    ({"sparsity_target": 1.0}, "sparsity_target"),
    ({"sparsity_target": "0.1"}, "sparsity_target"),
    ({"sparsity_weight": -1}, "sparsity_weight"),
])
def test_invalid_sparsity_parameters_are_refused_naming_them(params, match):
    X = np.random.RandomState(0).uniform(size=(20, 4))
    with pytest.raises(ValueError, match=match):
        SparseAutoencoder(3, **params).fit(X)


def test_pickle_and_skops_round_trip_bitwise(fitted, split, tmp_path):
    X = split[1]
    expected = fitted.transform(X)
    loaded = pickle.loads(pickle.dumps(fitted))
    assert_array_equal(loaded.transform(X), expected)
    assert_array_equal(loaded.components_, fitted.components_)
    skops = pytest.importorskip("skops.io")
    path = tmp_path / "sparse.skops"
    skops.dump(fitted, path)
    assert persistence.untrusted_types(path) == []
    restored = persistence.load(path)
    assert_array_equal(restored.transform(X), expected)
    assert restored.sparsity_curve_ == fitted.sparsity_curve_


def test_log_loss_and_partial_fit_work(split):
    X_train = split[0]
    model = SparseAutoencoder(20, loss="log_loss", random_state=0)
    for block in np.array_split(X_train, 3):
        model.partial_fit(block)
    assert model.n_iter_ == 3
    assert model.inverse_transform(model.transform(X_train[:4])).min() >= 0


@pytest.mark.slow  # about a minute: cross-validated logistic regressions
def test_as_features_it_beats_raw_pixels_and_the_rbm(split):
    """The issue's pipeline at the estimator's defaults, each representation
    with the logistic regression's C chosen by cross-validation on the
    training rows (as the scikit-learn gallery chose C for its RBM pipeline);
    the comparison over seeds, also at the default C, is
    benchmarks/bench_sparse.py."""
    from sklearn.neural_network import BernoulliRBM

    X_train, X_test, y_train, y_test = split
    classifier = GridSearchCV(LogisticRegression(max_iter=3000), {"C": [1, 10, 100, 1000]}, cv=3)
    sparse = make_pipeline(SparseAutoencoder(100, random_state=0), classifier)
    rbm = make_pipeline(BernoulliRBM(n_components=100, learning_rate=0.06, n_iter=20,
                                     random_state=0), classifier)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the RBM's and the regressions' own warnings
        scores = {name: clone(model).fit(X_train, y_train).score(X_test, y_test)
                  for name, model in [("sparse", sparse), ("rbm", rbm), ("raw", classifier)]}
    assert scores["sparse"] > scores["raw"] + 0.005 and scores["sparse"] > scores["rbm"], scores


@pytest.mark.slow  # two minutes on a busy machine: not cheap enough for the fast suite
def test_the_benchmark_runs_quickly(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_sparse
    finally:
        sys.path.pop(0)
    results = bench_sparse.measure(range(1), quick=True)
    assert set(results) == {"raw pixels", "BernoulliRBM(100)", "SparseAutoencoder(100)"}
    assert all(0.5 < row["CV C"][0] <= 1 for row in results.values())


def test_the_guide_and_the_example_are_registered():
    index = (ROOT / "docs" / "user_guide" / "index.rst").read_text()
    api = (ROOT / "docs" / "api.rst").read_text()
    assert "\n   sparse\n" in index and "SparseAutoencoder" in api
    assert "plot_sparse_features.py" in (ROOT / "docs" / "user_guide" / "sparse.rst").read_text()


def test_the_docstring_example_runs(capsys):
    # The doctest runs under --doctest-modules; this keeps it honest if that is off.
    import doctest

    import skae._sparse_ae as module

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module.SparseAutoencoder, "SparseAutoencoder"):
        runner.run(test, out=io.StringIO().write)
    assert runner.failures == 0 and runner.tries > 0


def test_score_samples_is_minus_the_reconstruction_error(fitted, split):
    # The guide's promise: the Gaussian density of skae._likelihood is for the
    # estimators whose code size a search chooses, not for this one.
    X_test = split[1]
    reconstruction = fitted.inverse_transform(fitted.transform(X_test))
    np.testing.assert_allclose(fitted.score_samples(X_test),
                               -((reconstruction - X_test) ** 2).mean(axis=1), rtol=1e-4)
