"""Discovery of skae's public estimators (as in scikit-learn's project template)."""

import inspect

from sklearn.base import BaseEstimator


def all_estimators():
    """Every public estimator class skae exports.

    Returns
    -------
    estimators : list of (str, type)
        Pairs of class name and class, sorted by name.

    Examples
    --------
    >>> from skae.utils import all_estimators
    >>> "AutoencoderTransformer" in dict(all_estimators())
    True
    """
    import skae

    estimators = [
        (name, obj)
        for name, obj in inspect.getmembers(skae, inspect.isclass)
        if issubclass(obj, BaseEstimator) and not name.startswith("_")
        and not inspect.isabstract(obj)
    ]
    return sorted(estimators)
