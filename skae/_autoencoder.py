"""AutoencoderTransformer: a stacked (symmetric) dense autoencoder."""

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.extmath import randomized_svd

from ._base import BaseAutoencoder, ReconstructionLoss
from ._docstrings import fill_shared_entries
from ._modules import can_start_at_pca, start_at_pca
from ._sources import sample_rows


@fill_shared_entries
class AutoencoderTransformer(BaseAutoencoder):
    """Stacked (symmetric) autoencoder as a scikit-learn transformer.

    The encoder maps the input through ``hidden_layer_sizes`` to a linear
    code of ``n_components``; the decoder mirrors it back. The network is
    trained with Adam to minimise the reconstruction loss ``loss`` names
    (by default the mean squared error).
    ``transform`` returns codes, ``inverse_transform`` decodes them.

    With ``activation="identity"`` and ``hidden_layer_sizes=()`` it is a
    linear autoencoder, whose code spans the same subspace as
    :class:`~sklearn.decomposition.PCA` with ``n_components``.

    Parameters
    ----------
    {n_components}
    {hidden_layer_sizes}
    {activation}
    {init}
    {batch_norm}
    {loss}
    {alpha}
    {batch_size}
    {learning_rate_init}
    {learning_rate}
    {max_iter}
    {tol}
    {n_iter_no_change}
    {early_stopping}
    {validation_fraction}
    {shuffle}
    {random_state}
    {warm_start}
    {verbose}
    {callbacks}
    {device}
    {n_threads}
    {precision}
    {distributed}

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network, with ``encoder`` and ``decoder`` submodules.
    encoder_ : torch.nn.Module
        The encoder (``module_.encoder``).
    decoder_ : torch.nn.Module
        The decoder (``module_.decoder``).
    device_ : torch.device
        The device the network lives on.
    batch_size_ : int
        The minibatch size used.
    n_iter_ : int
        Number of epochs run, over all calls of ``fit`` with ``warm_start``
        and of ``partial_fit``.
    loss_curve_ : list of float
        Mean training loss of every epoch.
    best_loss_ : float
        Lowest value in ``loss_curve_``.
    early_stopping_ : bool
        Whether the last ``fit`` held rows out (``early_stopping`` resolved);
        False after ``partial_fit``, which never does.
    validation_scores_ : list of float or None
        Validation score (:meth:`score` on the held-out rows) of every epoch
        when ``early_stopping_`` is True, else None.
    best_validation_score_ : float or None
        Best of ``validation_scores_``; its weights are the ones kept.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    sklearn.decomposition.PCA : The linear special case, solved exactly.
    sklearn.neural_network.MLPRegressor : A dense network in NumPy.

    References
    ----------
    .. [1] G. E. Hinton and R. R. Salakhutdinov, "Reducing the dimensionality
       of data with neural networks", Science 313 (5786), 2006.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skae import AutoencoderTransformer
    >>> X, _ = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> ae = AutoencoderTransformer(n_components=8, random_state=0)
    >>> codes = ae.fit_transform(X)
    >>> codes.shape
    (1797, 8)
    >>> ae.inverse_transform(codes).shape
    (1797, 64)
    >>> from sklearn.decomposition import PCA
    >>> pca = PCA(n_components=8).fit(X)
    >>> pca_error = ((pca.inverse_transform(pca.transform(X)) - X) ** 2).mean()
    >>> error = ((ae.inverse_transform(codes) - X) ** 2).mean()
    >>> bool(error < 0.8 * pca_error)  # less error than PCA with as many codes
    True
    """

    _parameter_constraints: dict = {
        **BaseAutoencoder._parameter_constraints,
        "init": [StrOptions({"auto", "pca", "random"})],
        "batch_norm": ["boolean", StrOptions({"auto"})],
    }

    def __init__(
        self,
        n_components=2,
        *,
        hidden_layer_sizes=(128,),
        activation="relu",
        init="auto",
        batch_norm="auto",
        loss="squared_error",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.003,
        learning_rate="adaptive",
        max_iter=200,
        tol=3e-3,
        n_iter_no_change=10,
        early_stopping="auto",
        validation_fraction=0.1,
        shuffle=True,
        random_state=None,
        warm_start=False,
        verbose=False,
        callbacks=None,
        device="auto",
        n_threads=1,
        precision="float32",
        distributed=False,
    ):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.init = init
        self.batch_norm = batch_norm
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.shuffle = shuffle
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.callbacks = callbacks
        self.device = device
        self.n_threads = n_threads
        self.precision = precision
        self.distributed = distributed

    def _check_params(self):
        super()._check_params()
        if self.init == "pca" and self.loss != "squared_error":
            raise ValueError(
                f"init='pca' starts the network at PCA's reconstruction, the optimum of "
                f"loss='squared_error' for a linear network, not of loss={self.loss!r}; "
                "use init='random' (or 'auto') with this loss.")
        if self.init == "pca" and self._batch_norm_requested():
            raise ValueError(
                "init='pca' starts the network at PCA's reconstruction, which a network "
                "with batch_norm=True cannot compute; use batch_norm=False (or 'auto') "
                "with init='pca', or init='random' with batch normalisation.")
        if self.init == "pca" and not self._can_start_at_pca():
            raise ValueError(
                f"init='pca' needs a piecewise-linear activation ('relu', 'leaky_relu' or "
                f"'identity') and hidden layers at least 2 * n_components = "
                f"{2 * self.n_components} wide; got activation={self.activation!r}, "
                f"hidden_layer_sizes={self.hidden_layer_sizes!r}. Widen the hidden layers "
                "or use init='random'.")

    def _can_start_at_pca(self):
        return can_start_at_pca(self._hidden_layer_sizes(), self.n_components, self.activation)

    def _starts_at_pca(self):
        """Whether a new network starts at PCA (``init`` resolved)."""
        if self.init == "auto":
            return (not self._batch_norm_requested() and self.loss == "squared_error"
                    and self._can_start_at_pca())
        return self.init == "pca"

    def _batch_norm_requested(self):
        return not (isinstance(self.batch_norm, str) and self.batch_norm == "auto") and bool(
            self.batch_norm)

    def _uses_batch_norm(self):
        """``batch_norm`` resolved: "auto" is on for a network of two hidden
        layers or more that starts at random."""
        if isinstance(self.batch_norm, str) and self.batch_norm == "auto":
            return len(self._hidden_layer_sizes()) >= 2 and not self._starts_at_pca()
        return bool(self.batch_norm)

    def _network_params(self):
        return {**super()._network_params(), "batch_norm": self._uses_batch_norm()}

    def _start_from_data(self, state, source, generator):
        if not self._starts_at_pca():
            return False
        mean, components = principal_components(source, self.n_components, generator)
        start_at_pca(state.module, mean, components, self.activation)
        return True

    def _network_architecture(self, n_features, row_shape=None):
        # He's scale for a random start; torch's default for the units a PCA
        # start leaves free (the small tables lost 1-8% to PCA's error with He's).
        return {"kind": "MLPAutoencoder", "n_features": int(n_features),
                **self._network_params(), "variance_preserving_init": not self._starts_at_pca()}

    _training_loss = ReconstructionLoss()


def principal_components(source, n_components, generator, max_rows=10_000):
    """Mean and leading principal axes (rows) of a sample of a source's rows.

    Up to ``max_rows`` rows (fewer for very wide rows: at most 2**24
    values) drawn at random, in float64. An exact SVD for small samples, a
    randomized one [1]_ otherwise.

    References
    ----------
    .. [1] N. Halko, P.-G. Martinsson and J. A. Tropp, "Finding structure
       with randomness", SIAM Review 53 (2), 2011.
    """
    sample = sample_rows(source, generator, max_rows, min_rows=n_components + 1)
    mean = sample.mean(axis=0)
    centred = sample - mean
    k = min(n_components, *centred.shape)
    if centred.size <= 4_000_000:
        _, _, axes = np.linalg.svd(centred, full_matrices=False)
    else:
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        _, _, axes = randomized_svd(centred, k, random_state=seed)
    return mean, axes[:k]
