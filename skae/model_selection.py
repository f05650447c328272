"""Refit rules for choosing the size of a code with scikit-learn's searches.

With ``loss="squared_error"``, an autoencoder's
:meth:`~skae.AutoencoderTransformer.score` is a log-likelihood whose
cross-validated maximum is the code size a plain search keeps. The rules
here are ``refit`` callables for :class:`~sklearn.model_selection.GridSearchCV`
(and the other searches) for the cases where that maximum is not what you
want, or does not exist: they keep the smallest code whose score is close
enough to the best one. That is the choice to make when the score keeps
improving with the code (minus the reconstruction loss of ``loss="log_loss"``
or ``"poisson"``), when it reaches a plateau rather than a peak (the
variational autoencoder's ELBO), and when a few nats of likelihood are not
worth more code dimensions.
"""

import math
import re
from numbers import Real

import numpy as np

__all__ = ["smallest_within"]


def smallest_within(tolerance=None, *, relative=True, param=None, scoring=None,
                    greater_is_better=True):
    """A ``refit`` rule: the smallest value of a parameter whose score is close to the best.

    Pass the result as ``refit=`` to :class:`~sklearn.model_selection.GridSearchCV`
    (or another search). Among the candidates whose mean test score is no
    worse than the best one's by more than the tolerance, it keeps the one
    with the smallest value of ``param`` (typically ``n_components``); among
    candidates with that value, the one with the best mean score. The
    search's ``best_index_``, ``best_params_`` and refitted
    ``best_estimator_`` then describe that candidate (``best_score_`` is not
    set when ``refit`` is a callable).

    Parameters
    ----------
    tolerance : float or None, default=None
        How much worse than the best mean test score a candidate may be.
        ``None`` applies the one-standard-error rule [1]_: the tolerance is
        the standard error of the best candidate's mean score,
        ``std(split scores, ddof=1) / sqrt(n_splits)``. A float is read as a
        fraction of the best score's magnitude when ``relative`` is True
        (``0.1`` accepts a reconstruction error 10% above the best), and in
        the score's own units otherwise (nats per row for a log-likelihood,
        whose magnitude means nothing: use ``relative=False`` there).
    relative : bool, default=True
        Whether a float ``tolerance`` is relative to ``|best score|``.
        Ignored when ``tolerance`` is None.
    param : str or None, default=None
        The parameter whose smallest value is wanted, as in the search's
        grid: ``"n_components"`` or, in a pipeline, ``"ae__n_components"``
        (the ``"param_"`` prefix of ``cv_results_`` keys may be included).
        Its values must be numbers. None finds it: the one parameter whose
        value differs between candidates (an error says which to choose
        when several do).
    scoring : str or None, default=None
        With several metrics (``scoring`` a list or dict in the search), the
        name of the one to compare. None uses the search's only metric.
    greater_is_better : bool, default=True
        Whether higher scores are better. scikit-learn's scorers always
        are (they negate losses); set False only for ``cv_results_``
        holding losses.

    Returns
    -------
    refit : callable
        ``refit(cv_results) -> int``, the index of the chosen candidate. It
        also has ``threshold(cv_results)``, the worst score still accepted.
        Candidates whose mean score is NaN (failed fits) are ignored, and so
        are candidates that lack ``param`` (from another grid of a list of
        grids); if none of those left is within the tolerance, the best
        candidate is kept.

    See Also
    --------
    sklearn.model_selection.GridSearchCV : The search that calls the rule.
    skae.AutoencoderTransformer.score : A log-likelihood that peaks at the
        code size a plain search keeps (``loss="squared_error"``).
    skae.VariationalAutoencoder.score : The ELBO, which stops improving (a
        plateau, not a peak) once the code is wide enough.

    References
    ----------
    .. [1] T. Hastie, R. Tibshirani and J. Friedman, "The Elements of
       Statistical Learning", 2nd edition, Springer, 2009, section 7.10.

    Examples
    --------
    Minus the reconstruction error of an autoencoder with ``loss="log_loss"``
    keeps improving with the code; the rule keeps the smallest code whose
    error is within 25% of the best:

    >>> from skae.model_selection import smallest_within
    >>> cv_results = {
    ...     "param_n_components": [2, 4, 8, 16],
    ...     "mean_test_score": [-0.052, -0.037, -0.022, -0.018],
    ... }
    >>> rule = smallest_within(0.25)
    >>> rule
    smallest_within(tolerance=0.25)
    >>> int(rule(cv_results))  # n_components=8
    2
    >>> print(f"{rule.threshold(cv_results):.4f}")
    -0.0225

    In a search, with the log-likelihood of a linear autoencoder: three strong
    directions and two weak ones above the noise. The default refit keeps the
    likelihood's maximum, 5 codes; a code of 3 is within 2 nats a row of it:

    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skae import AutoencoderTransformer
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 30))
    >>> X += 0.04 * rng.normal(size=(300, 2)) @ rng.normal(size=(2, 30))
    >>> X += 0.1 * rng.normal(size=X.shape)
    >>> linear = AutoencoderTransformer(activation="identity", hidden_layer_sizes=(),
    ...                                 random_state=0)
    >>> grid = {"n_components": [1, 2, 3, 4, 5, 6]}
    >>> GridSearchCV(linear, grid, cv=3).fit(X).best_params_
    {'n_components': 5}
    >>> search = GridSearchCV(linear, grid, cv=3,
    ...                       refit=smallest_within(2.0, relative=False)).fit(X)
    >>> search.best_params_
    {'n_components': 3}
    """
    if tolerance is not None and (
            isinstance(tolerance, bool) or not isinstance(tolerance, Real)
            or not tolerance >= 0):
        raise ValueError(
            f"tolerance must be None (one standard error) or a number >= 0, got {tolerance!r}."
        )
    for name, value in (("param", param), ("scoring", scoring)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string or None, got {value!r}.")
    return _SmallestWithin(tolerance, relative, param, scoring, greater_is_better)


class _SmallestWithin:
    """The callable :func:`smallest_within` returns (a class, so that it pickles)."""

    def __init__(self, tolerance, relative, param, scoring, greater_is_better):
        self.tolerance = tolerance
        self.relative = bool(relative)
        self.param = param
        self.scoring = scoring
        self.greater_is_better = bool(greater_is_better)

    def __repr__(self):
        defaults = dict(tolerance=None, relative=True, param=None, scoring=None,
                        greater_is_better=True)
        given = [f"{name}={value!r}" for name, value in vars(self).items()
                 if value != defaults[name]]
        return f"smallest_within({', '.join(given)})"

    # ------------------------------------------------------------------ #

    def __call__(self, cv_results):
        scores, best, threshold = self._scores_and_threshold(cv_results)
        values, present = self._param_values(cv_results)
        sign = 1.0 if self.greater_is_better else -1.0
        eligible = present & np.isfinite(scores) & (sign * scores >= sign * threshold)
        if not eligible.any():
            return best
        smallest = values[eligible].min()
        tied = np.flatnonzero(eligible & (values == smallest))
        # The best score among candidates with the smallest value; the first on ties.
        return int(tied[np.argmax(sign * scores[tied])])

    def threshold(self, cv_results):
        """The worst mean test score the rule still accepts.

        Parameters
        ----------
        cv_results : dict
            A search's ``cv_results_``.

        Returns
        -------
        threshold : float
            The best mean score minus the tolerance (plus, when
            ``greater_is_better`` is False).
        """
        return self._scores_and_threshold(cv_results)[2]

    # ------------------------------------------------------------------ #

    def _metric(self, cv_results):
        if self.scoring is not None:
            if f"mean_test_{self.scoring}" not in cv_results:
                raise ValueError(
                    f"scoring={self.scoring!r} is not a metric of this search; it has "
                    f"{sorted(self._metrics(cv_results))}."
                )
            return self.scoring
        if "mean_test_score" in cv_results:
            return "score"
        metrics = self._metrics(cv_results)
        if len(metrics) == 1:
            return metrics[0]
        raise ValueError(
            f"The search has several metrics {sorted(metrics)}; pass "
            "smallest_within(..., scoring=<name>) to say which one to compare."
            if metrics else "cv_results has no 'mean_test_*' entry to compare."
        )

    @staticmethod
    def _metrics(cv_results):
        return [key[len("mean_test_"):] for key in cv_results if key.startswith("mean_test_")]

    def _scores_and_threshold(self, cv_results):
        metric = self._metric(cv_results)
        scores = np.asarray(cv_results[f"mean_test_{metric}"], dtype=float)
        finite = np.isfinite(scores)
        if not finite.any():
            raise ValueError(
                f"Every candidate's mean test {metric} is NaN or infinite (every fit "
                "failed?); there is no best candidate to compare with."
            )
        sign = 1.0 if self.greater_is_better else -1.0
        best = int(np.flatnonzero(finite)[np.argmax(sign * scores[finite])])
        best_score = scores[best]
        if self.tolerance is None:
            margin = self._standard_error(cv_results, metric, best)
        elif self.relative:
            margin = self.tolerance * abs(best_score)
        else:
            margin = self.tolerance
        return scores, best, best_score - sign * margin

    @staticmethod
    def _standard_error(cv_results, metric, index):
        pattern = re.compile(rf"split(\d+)_test_{re.escape(metric)}")
        splits = [np.asarray(values, dtype=float)[index]
                  for key, values in cv_results.items() if pattern.fullmatch(key)]
        if not splits:
            raise ValueError(
                f"tolerance=None needs the per-split scores 'split<i>_test_{metric}' to "
                "compute a standard error; pass a numeric tolerance instead."
            )
        if len(splits) < 2:
            return 0.0
        return float(np.std(splits, ddof=1) / math.sqrt(len(splits)))

    def _param_values(self, cv_results):
        name = self._param_name(cv_results)
        column = cv_results[f"param_{name}"]
        mask = np.ma.getmaskarray(column) if np.ma.isMaskedArray(column) else np.zeros(
            len(column), dtype=bool)
        values = np.zeros(len(column))
        for index, value in enumerate(np.ma.getdata(column) if np.ma.isMaskedArray(column)
                                      else column):
            if mask[index]:
                continue
            if isinstance(value, bool) or not isinstance(value, Real):
                raise ValueError(
                    f"smallest_within compares values of {name!r} as numbers, but one "
                    f"candidate has {name}={value!r}; pass param=<a numeric parameter>."
                )
            values[index] = value
        return values, ~mask

    def _param_name(self, cv_results):
        names = [key[len("param_"):] for key in cv_results if key.startswith("param_")]
        if self.param is not None:
            name = self.param[len("param_"):] if self.param.startswith("param_") else self.param
            if name not in names:
                raise ValueError(
                    f"param={self.param!r} is not a parameter of this search; it searched "
                    f"over {sorted(names)}."
                )
            return name
        varying = [name for name in names if _varies(cv_results[f"param_{name}"])]
        if len(varying) == 1:
            return varying[0]
        if not varying:
            raise ValueError(
                "No parameter varies between the candidates; pass param=<name> to say "
                "which one to minimise."
            )
        raise ValueError(
            f"Several parameters vary between the candidates ({sorted(varying)}); pass "
            "smallest_within(..., param=<name>) to say which one to minimise."
        )


def _varies(column):
    """Whether a ``cv_results_['param_*']`` column holds more than one value."""
    mask = np.ma.getmaskarray(column) if np.ma.isMaskedArray(column) else None
    data = np.ma.getdata(column) if mask is not None else column
    seen = []
    for index, value in enumerate(data):
        if mask is not None and mask[index]:
            value = _MISSING
        if not any(_same(value, other) for other in seen):
            seen.append(value)
            if len(seen) > 1:
                return True
    return False


_MISSING = object()


def _same(a, b):
    try:
        return bool(a is b or a == b)
    except (TypeError, ValueError):  # e.g. arrays, whose == is elementwise
        return False
