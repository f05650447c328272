"""scikit-learn's estimator checks over every public skae estimator.

Estimators are checked with their default parameters, so that a new public
estimator is checked without editing this file.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skae.utils import all_estimators


def _expected_failures(estimator):
    """An estimator may declare checks it fails, with a reason, in
    ``_expected_check_failures``; none should unless its issue says so."""
    return getattr(estimator, "_expected_check_failures", dict)()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [Estimator() for _, Estimator in all_estimators()],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_all_estimators_found():
    assert "AutoencoderTransformer" in dict(all_estimators())
