"""AutoencoderTransformer: a stacked (symmetric) dense autoencoder."""

import math

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.extmath import randomized_svd

from ._base import BaseAutoencoder, ReconstructionLoss
from ._device import derive_seed, make_generator
from ._docstrings import fill_shared_entries
from ._engine import Trainer, fit_loop, resolve_batch_size
from ._losses import LIKELIHOODS
from ._modules import ACTIVATIONS, can_start_at_pca, greedy_stages, start_at_pca
from ._optim import make_optimizer
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
    {tied_weights}
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
    activation_ : str
        The hidden layers' activation (``activation`` resolved).
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

    # score_samples of a squared-error fit is a log-likelihood (skae._likelihood).
    _density_score = True

    _parameter_constraints: dict = {
        **BaseAutoencoder._parameter_constraints,
        "activation": [StrOptions({"auto", *ACTIVATIONS})],
        "init": [StrOptions({"auto", "pca", "random", "greedy"})],
        "batch_norm": ["boolean", StrOptions({"auto"})],
        "tied_weights": ["boolean"],
    }

    def __init__(
        self,
        n_components=2,
        *,
        hidden_layer_sizes=(128,),
        activation="auto",
        init="auto",
        batch_norm="auto",
        tied_weights=False,
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
        self.tied_weights = tied_weights
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
        # "auto" is ReLU wherever the network starts at PCA.
        activation = "relu" if self.activation == "auto" else self.activation
        return can_start_at_pca(self._hidden_layer_sizes(), self.n_components, activation)

    @property
    def activation_(self):
        """The hidden layers' activation (``activation`` resolved)."""
        return self._training.architecture["activation"]

    def _activation(self):
        # GELU where batch normalisation is on (a deep network started at
        # random): on MNIST's 784-1000-500-250-30 network with loss="log_loss"
        # it took the test error from 3.12 to 2.75 (see the Performance page).
        # ReLU elsewhere: the PCA start needs a piecewise-linear unit.
        if self.activation != "auto":
            return self.activation
        return "gelu" if self._uses_batch_norm() else "relu"

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
        layers or more that does not start at PCA."""
        if isinstance(self.batch_norm, str) and self.batch_norm == "auto":
            return len(self._hidden_layer_sizes()) >= 2 and not self._starts_at_pca()
        return bool(self.batch_norm)

    def _network_params(self):
        return {**super()._network_params(), "batch_norm": self._uses_batch_norm(),
                "tied_weights": bool(self.tied_weights)}

    def _start_from_data(self, state, source, generator):
        if self.init == "greedy":
            self._train_greedily(state, source, generator)
            return True
        if not self._starts_at_pca():
            return False
        mean, components = principal_components(source, self.n_components, generator)
        start_at_pca(state.module, mean, components, self._activation())
        return True

    def _restart_from_data(self, state, source, generator):
        # The greedy start is training, not an estimate that more rows would
        # sharpen: the network no epoch beat is kept as the layers left it.
        if self.init != "greedy":
            super()._restart_from_data(state, source, generator)

    def _train_greedily(self, state, source, generator):
        """``init="greedy"``: train the network one layer at a time, through the engine.

        Each encoder layer and its mirror in the decoder train as a shallow
        autoencoder (:func:`~skae._modules.greedy_stages`) on the codes of the
        layers already trained: the first on the rows, with the estimator's
        loss (its noise included), the others with the squared error of the
        codes they reconstruct. Each is a phase of its own
        (``"greedy layer 1"``, ...) of :func:`~skae._engine.fit_loop` with a
        fresh Adam, for :func:`greedy_epochs` epochs at most, stopped
        earlier by the training loss's stopping rule.
        """
        stages = greedy_stages(state.module)
        batch_size = resolve_batch_size(self.batch_size, source.n_rows)
        max_iter = greedy_epochs(self.max_iter, source.n_rows, batch_size)
        learning_rate, penalty = self._optimizer_settings()
        seed = int(torch.randint(2**62, (1,), generator=generator))
        for index, (inputs, shallow) in enumerate(stages):
            if index == 0:
                loss = self._loss(state)
            else:
                width = shallow[0][0].in_features
                penalty = self.alpha * LIKELIHOODS["squared_error"].penalty_factor / width
                loss = CodeReconstruction(inputs)
            trainer = Trainer(
                shallow, loss, make_optimizer(shallow, learning_rate, penalty),
                batch_size=batch_size,
                shuffle_generator=(make_generator(derive_seed(seed, index, 0), "cpu")
                                   if self.shuffle else None),
                noise_generator=make_generator(derive_seed(seed, index, 1), state.device))
            try:
                fit_loop(trainer, source, max_iter=max_iter, tol=self.tol,
                         n_iter_no_change=self.n_iter_no_change,
                         callbacks=self._callbacks(), phase=f"greedy layer {index + 1}",
                         name=type(self).__name__, relative_tol=self._relative_tol,
                         lr_reductions=0)
            finally:
                trainer.close()

    def _network_architecture(self, n_features, row_shape=None):
        # He's scale for a random start; torch's default for the units a PCA
        # start leaves free (the small tables lost 1-8% to PCA's error with He's).
        return {"kind": "MLPAutoencoder", "n_features": int(n_features),
                **self._network_params(), "variance_preserving_init": not self._starts_at_pca()}

    _training_loss = ReconstructionLoss()


def greedy_epochs(max_iter, n_rows, batch_size, n_steps=1000, min_epochs=5):
    """Epochs of each layer of the greedy start: enough for about ``n_steps``
    steps, at least ``min_epochs``, at most ``max_iter``.

    Left to the stopping rule alone, the layers of a 64-128-64-8 network
    on the digits stopped improving by ``tol`` after 800 to 1,150 steps
    (89 to 127 epochs of 9 steps). A step count, not an epoch count, keeps a
    small table from getting a handful of steps and a large one from
    spending many passes on one layer.
    """
    steps_per_epoch = math.ceil(n_rows / batch_size)
    return max(1, min(max_iter, max(min_epochs, math.ceil(n_steps / steps_per_epoch))))


class CodeReconstruction:
    """The loss of a later greedy stage: the mean squared error with which a
    shallow autoencoder reconstructs the codes ``inputs`` (the layers trained
    before it, fixed, in eval mode) gives a batch of rows."""

    def __init__(self, inputs):
        self.inputs = inputs

    def __call__(self, module, X, y, generator):
        self.inputs.eval()
        with torch.no_grad():
            codes = self.inputs(X)
        return torch.nn.functional.mse_loss(module(codes), codes), {}


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
