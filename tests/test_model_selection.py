"""skae.model_selection: refit rules that choose the size of a code."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from skae import AutoencoderTransformer
from skae.model_selection import smallest_within


def results(scores, values=(2, 4, 8, 16), splits=None, name="n_components", metric="score"):
    """A minimal ``cv_results_`` for candidates with the given mean scores."""
    cv_results = {f"param_{name}": np.ma.MaskedArray(list(values), dtype=object),
                  f"mean_test_{metric}": np.asarray(scores, dtype=float)}
    for index, split in enumerate(splits or []):
        cv_results[f"split{index}_test_{metric}"] = np.asarray(split, dtype=float)
    return cv_results


# --------------------------------------------------------------------------- #
# The rule on hand-made cv_results_.

@pytest.mark.parametrize("tolerance, expected", [
    (0.0, 3),     # only the best
    (0.1, 3),     # -0.0198 would be needed: 8 (-0.022) is out
    (0.25, 2),    # within -0.0225: 8 is in, 4 (-0.037) is out
    (1.1, 1),     # within -0.0378: 4 is in
    (10.0, 0),    # everything is in
])
def test_relative_tolerance_keeps_the_smallest_value_within_it(tolerance, expected):
    cv_results = results([-0.052, -0.037, -0.022, -0.018])
    assert smallest_within(tolerance)(cv_results) == expected


def test_absolute_tolerance_is_in_the_scores_units():
    cv_results = results([-0.052, -0.037, -0.022, -0.018])
    assert smallest_within(0.005, relative=False)(cv_results) == 2
    assert smallest_within(0.003, relative=False)(cv_results) == 3
    assert smallest_within(0.003, relative=False).threshold(cv_results) == pytest.approx(-0.021)


def test_default_is_one_standard_error_of_the_best():
    splits = [[-0.050, -0.040, -0.0245, -0.019],
              [-0.054, -0.034, -0.0195, -0.017],
              [-0.052, -0.037, -0.0220, -0.018]]
    cv_results = results(np.mean(splits, axis=0), splits=splits)
    best_splits = np.array(splits)[:, 3]
    standard_error = best_splits.std(ddof=1) / np.sqrt(3)  # 0.000577
    rule = smallest_within()
    assert rule.threshold(cv_results) == pytest.approx(-0.018 - standard_error)
    assert rule(cv_results) == 3  # 8 (-0.022) is 7 standard errors away
    # Noisier folds widen the margin enough to take 8.
    noisy = [[-0.050, -0.040, -0.0245, -0.026],
             [-0.054, -0.034, -0.0195, -0.010],
             [-0.052, -0.037, -0.0220, -0.018]]
    assert smallest_within()(results(np.mean(noisy, axis=0), splits=noisy)) == 2


def test_order_of_candidates_does_not_matter():
    cv_results = results([-0.022, -0.052, -0.018, -0.037], values=(8, 2, 16, 4))
    assert smallest_within(0.25)(cv_results) == 0
    assert smallest_within(1.1)(cv_results) == 3


def test_nan_scores_are_ignored():
    cv_results = results([np.nan, -0.037, -0.022, np.nan])
    assert smallest_within(0.0)(cv_results) == 2
    assert smallest_within(1.0)(cv_results) == 1


def test_every_score_nan_is_an_error():
    with pytest.raises(ValueError, match="NaN"):
        smallest_within(0.1)(results([np.nan] * 4))


def test_ties_on_the_value_take_the_best_score_then_the_first():
    cv_results = {
        "param_n_components": np.ma.MaskedArray([4, 4, 8, 8], dtype=object),
        "param_alpha": np.ma.MaskedArray([0.1, 0.01, 0.1, 0.01], dtype=object),
        "mean_test_score": np.array([-0.030, -0.025, -0.020, -0.020]),
    }
    rule = smallest_within(0.3, param="n_components")
    assert rule(cv_results) == 1
    assert smallest_within(0.0, param="n_components")(cv_results) == 2


def test_greater_is_better_false_reads_losses():
    cv_results = results([0.052, 0.037, 0.022, 0.018])
    assert smallest_within(0.25, greater_is_better=False)(cv_results) == 2
    assert smallest_within(0.25, greater_is_better=False).threshold(cv_results) == \
        pytest.approx(0.0225)


def test_the_parameter_is_found_or_named():
    cv_results = {
        "param_ae__n_components": np.ma.MaskedArray([2, 4, 8], dtype=object),
        "param_ae__alpha": np.ma.MaskedArray([0.1, 0.1, 0.1], dtype=object),
        "mean_test_score": np.array([-0.05, -0.02, -0.019]),
    }
    assert smallest_within(0.1)(cv_results) == 1  # the only varying parameter
    assert smallest_within(0.1, param="ae__n_components")(cv_results) == 1
    assert smallest_within(0.1, param="param_ae__n_components")(cv_results) == 1
    with pytest.raises(ValueError, match=r"param='n_components' is not a parameter.*"
                                         r"ae__n_components"):
        smallest_within(0.1, param="n_components")(cv_results)


def test_several_varying_parameters_need_param():
    cv_results = {
        "param_n_components": np.ma.MaskedArray([2, 4, 2, 4], dtype=object),
        "param_alpha": np.ma.MaskedArray([0.1, 0.1, 0.01, 0.01], dtype=object),
        "mean_test_score": np.array([-0.05, -0.02, -0.04, -0.019]),
    }
    with pytest.raises(ValueError, match=r"Several parameters vary.*param=<name>"):
        smallest_within(0.1)(cv_results)
    # n_components=4 with the better of its two scores.
    assert smallest_within(0.1, param="n_components")(cv_results) == 3


def test_no_varying_parameter_needs_param():
    with pytest.raises(ValueError, match="No parameter varies"):
        smallest_within(0.1)(results([-0.02, -0.02], values=(4, 4)))


def test_non_numeric_values_are_refused():
    cv_results = results([-0.05, -0.02], values=("small", "large"), name="size")
    with pytest.raises(ValueError, match=r"as numbers.*size='small'"):
        smallest_within(0.1)(cv_results)


def test_candidates_without_the_parameter_are_skipped():
    # Two grids: one over n_components, one without it (masked).
    column = np.ma.MaskedArray([2, 4, 0], mask=[False, False, True], dtype=object)
    cv_results = {"param_n_components": column,
                  "mean_test_score": np.array([-0.05, -0.021, -0.02])}
    assert smallest_within(0.1)(cv_results) == 1
    # If no candidate with the parameter is close enough, the best is kept.
    assert smallest_within(0.0)(cv_results) == 2


def test_multi_metric_needs_scoring():
    cv_results = results([-0.05, -0.02, -0.019], values=(2, 4, 8), metric="neg_mse")
    cv_results["mean_test_r2"] = np.array([0.5, 0.9, 0.91])
    with pytest.raises(ValueError, match=r"several metrics.*scoring=<name>"):
        smallest_within(0.1)(cv_results)
    assert smallest_within(0.1, scoring="neg_mse")(cv_results) == 1
    assert smallest_within(0.05, scoring="r2")(cv_results) == 1
    assert smallest_within(0.0, scoring="r2")(cv_results) == 2
    with pytest.raises(ValueError, match=r"scoring='mse' is not a metric.*neg_mse"):
        smallest_within(0.1, scoring="mse")(cv_results)


def test_a_single_named_metric_is_used_without_scoring():
    assert smallest_within(0.1)(results([-0.05, -0.02, -0.019], values=(2, 4, 8),
                                        metric="neg_mse")) == 1


def test_standard_error_needs_split_scores():
    with pytest.raises(ValueError, match="split<i>_test_score"):
        smallest_within()(results([-0.05, -0.02]))


@pytest.mark.parametrize("tolerance", [-0.1, "0.1", True, np.nan])
def test_bad_tolerance_is_refused(tolerance):
    with pytest.raises(ValueError, match="tolerance must be None"):
        smallest_within(tolerance)


def test_bad_param_type_is_refused():
    with pytest.raises(TypeError, match="param must be a string"):
        smallest_within(0.1, param=3)


def test_repr_pickle_and_clone():
    assert repr(smallest_within(0.05, param="ae__n_components")) == \
        "smallest_within(tolerance=0.05, param='ae__n_components')"
    assert repr(smallest_within()) == "smallest_within()"
    rule = smallest_within(0.25, param="n_components")
    cv_results = results([-0.052, -0.037, -0.022, -0.018])
    assert pickle.loads(pickle.dumps(rule))(cv_results) == rule(cv_results)
    search = GridSearchCV(AutoencoderTransformer(), {"n_components": [2, 4]}, refit=rule)
    assert clone(search).refit(cv_results) == rule(cv_results)


# --------------------------------------------------------------------------- #
# In a search, on real fits.

@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def test_keeps_the_strong_directions_below_the_likelihoods_maximum(quiet):
    """The log-likelihood peaks at all five directions above the noise; a
    tolerance in nats keeps the three strong ones (the docstring's search)."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 30))
    X += 0.04 * rng.normal(size=(300, 2)) @ rng.normal(size=(2, 30))
    X += 0.1 * rng.normal(size=X.shape)
    linear = AutoencoderTransformer(activation="identity", hidden_layer_sizes=(),
                                    random_state=0)
    grid = {"n_components": [1, 2, 3, 4, 5, 6]}
    search = GridSearchCV(linear, grid, cv=3,
                          refit=smallest_within(2.0, relative=False)).fit(X)
    assert search.best_params_ == {"n_components": 3}
    assert search.best_estimator_.n_components == 3
    # The default refit keeps the likelihood's maximum, a larger code.
    assert np.argmax(search.cv_results_["mean_test_score"]) == 4


def test_picks_the_rank_under_a_reconstruction_loss(quiet):
    """Minus the log loss keeps improving with the code; a relative tolerance
    finds the rank of the logits."""
    rng = np.random.RandomState(0)
    X = (rng.normal(size=(300, 3)) @ rng.normal(size=(3, 30)) > 0).astype(float)
    # Every training setting is pinned, so that a change of defaults cannot move the test.
    linear = AutoencoderTransformer(activation="identity", hidden_layer_sizes=(),
                                    loss="log_loss", learning_rate_init=0.03, max_iter=100,
                                    tol=1e-4, early_stopping=False, random_state=0)
    grid = {"n_components": [1, 2, 3, 4, 5, 6]}
    # Measured: -0.488, -0.265, -0.0385, -0.0355, -0.0300, -0.0297 for 1 ... 6.
    search = GridSearchCV(linear, grid, cv=3, refit=smallest_within(0.5)).fit(X)
    assert search.best_params_ == {"n_components": 3}
    assert np.argmax(search.cv_results_["mean_test_score"]) > 2


def test_a_plain_search_picks_a_mid_size_code_on_the_digits(digits, quiet):
    """The held-out log-likelihood peaks inside the grid (the reconstruction
    error fell all the way to 48 codes); the one-standard-error rule keeps a
    code no larger."""
    X = digits[0]
    ae = AutoencoderTransformer(hidden_layer_sizes=(64,), learning_rate_init=0.01,
                                max_iter=15, tol=1e-4, early_stopping=False, init="random",
                                random_state=0)
    pipeline = Pipeline([("scale", MinMaxScaler()), ("ae", ae)])
    sizes = [2, 4, 8, 16, 32, 48]
    search = GridSearchCV(pipeline, {"ae__n_components": sizes}, cv=3).fit(X)
    # Measured: -4.79, 2.99, 6.71, 9.98, 11.55, 3.07 nats a row for 2 ... 48.
    best = search.best_params_["ae__n_components"]
    assert sizes[0] < best < sizes[-1]
    chosen = smallest_within()(search.cv_results_)
    assert search.cv_results_["param_ae__n_components"][chosen] <= best
