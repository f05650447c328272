"""Loading skops files safely: the exact types skae writes, and a loader that trusts only them.

A skops file names the types it is built from, and loading calls them (a
class's constructor, or whatever callable the file names in its place).
:func:`skops.io.load` therefore builds only the types skops trusts by default
(NumPy arrays, Python containers, scikit-learn's estimators) and those passed
as ``trusted``. :data:`TRUSTED_TYPES` is the list to pass for skae's models:
the exact names of the classes skae writes, never a module prefix and never a
function, so that a crafted file that names any other callable is refused
before anything in it runs.
"""

__all__ = ["TRUSTED_TYPES", "load", "untrusted_types"]

#: The types of a skae model that skops does not trust by default, by their
#: exact names: skae's estimators, the scikit-learn steps the ``skae``
#: command puts before one (trusted by skops already; listed so that the list
#: describes a model saved by ``skae reduce --save`` whole) and NumPy's dtype.
#: Loading any of them calls no code from the file beyond the class's own
#: ``__setstate__``.
TRUSTED_TYPES = (
    "skae._autoencoder.AutoencoderTransformer",
    "skae._classifier.AutoencoderClassifier",
    "skae._convolutional.ConvolutionalAutoencoder",
    "skae._denoising.DenoisingAutoencoder",
    "skae._recurrent.RecurrentAutoencoder",
    "skae._sparse_ae.SparseAutoencoder",
    "skae._variational.VariationalAutoencoder",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.StandardScaler",
    "numpy.dtype",
)


def _skops_io():
    try:
        import skops.io
    except ImportError:
        raise ImportError('loading skops files needs skops: pip install "skae[cli]" '
                          "(or pip install skops)") from None
    return skops.io


def untrusted_types(file):
    """The types in a skops file that neither skops nor skae trusts.

    Parameters
    ----------
    file : str or path-like
        A file written by :func:`skops.io.dump`.

    Returns
    -------
    names : list of str
        The fully qualified names, sorted; empty when :func:`load` would
        load the file.

    Examples
    --------
    >>> import collections, pathlib, tempfile
    >>> import skops.io
    >>> from skae import persistence
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "counter.skops"
    >>> skops.io.dump(collections.Counter(a=1), path)
    >>> persistence.untrusted_types(path)
    ['collections.Counter']
    """
    sio = _skops_io()
    return sorted(set(sio.get_untrusted_types(file=file)) - set(TRUSTED_TYPES))


def load(file):
    """Load a skops file, trusting only :data:`TRUSTED_TYPES` besides skops' defaults.

    The file is audited before anything in it is built: a file naming any
    other type or function (such as a crafted one whose node names a
    function, which loading would call) is refused and nothing in it runs.

    Parameters
    ----------
    file : str or path-like
        A file written by :func:`skops.io.dump`, e.g. a fitted skae estimator,
        a :class:`~sklearn.pipeline.Pipeline` of scikit-learn scalers and a
        skae estimator, or a model saved by ``skae reduce --save``.

    Returns
    -------
    model : object
        The object the file holds.

    Raises
    ------
    skops.io.exceptions.UntrustedTypesFoundException
        When the file names types outside :data:`TRUSTED_TYPES` and skops'
        defaults; the message lists them (see also :func:`untrusted_types`).
        Load such a file with :func:`skops.io.load` only if you trust its
        source and have read the list.
    ImportError
        When skops is not installed.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> import skops.io
    >>> from skae import AutoencoderTransformer
    >>> from skae import persistence
    >>> X = np.random.RandomState(0).normal(size=(60, 5))
    >>> model = AutoencoderTransformer(n_components=2, random_state=0).fit(X)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.skops"
    >>> skops.io.dump(model, path)
    >>> loaded = persistence.load(path)
    >>> np.allclose(loaded.transform(X), model.transform(X))
    True
    """
    sio = _skops_io()
    from skops.io.exceptions import UntrustedTypesFoundException

    foreign = untrusted_types(file)
    if foreign:
        raise UntrustedTypesFoundException(foreign)
    # skops audits the file again against the same list before building it.
    return sio.load(file, trusted=list(TRUSTED_TYPES))
