"""DenoisingAutoencoder: a dense autoencoder trained to undo input noise."""

from numbers import Real

from sklearn.utils._param_validation import Interval, StrOptions

from ._autoencoder import AutoencoderTransformer
from ._base import ReconstructionLoss
from ._docstrings import fill_shared_entries
from ._modules import check_noise_level


@fill_shared_entries
class DenoisingAutoencoder(AutoencoderTransformer):
    """Denoising (symmetric, dense) autoencoder as a scikit-learn transformer.

    The network of :class:`AutoencoderTransformer`, trained to reconstruct
    each clean row from a corrupted copy of it [1]_: during training only,
    ``noise`` is applied to the inputs while the loss (``loss``, by default
    the mean squared error over features) compares the output with the
    clean rows. This
    makes the code robust to small perturbations of the input, and the
    reconstruction ``inverse_transform(transform(X))`` a denoiser.
    ``transform``, ``inverse_transform``, ``score`` and ``score_samples``
    see no noise and are deterministic.

    Parameters
    ----------
    {n_components}
    noise : {"gaussian", "dropout"}, default="gaussian"
        The corruption applied to training inputs: ``"gaussian"`` adds
        independent zero-mean Gaussian noise to every entry; ``"dropout"``
        sets every entry to zero with probability ``noise_level`` and scales
        the kept entries by ``1 / (1 - noise_level)`` (as
        :class:`torch.nn.Dropout`), so that clean inputs at inference match
        the corrupted ones in expectation.
    noise_level : float, default=0.1
        The standard deviation of the Gaussian noise (in the units of ``X``;
        0.1 is a tenth of a standard deviation on standardised data, or of
        the range of data scaled to [0, 1]), or the dropout rate, in
        ``[0, 1)``. ``0`` trains a plain autoencoder.
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
    early_stopping : "auto" or bool, default="auto"
        Hold out ``validation_fraction`` of the rows and judge progress by
        their denoising error: minus the reconstruction loss between the
        clean rows and the reconstruction of a corrupted copy of them (the
        training ``noise``, the same draw at every epoch), so that training
        stops when denoising, not plain reconstruction, stops improving. The
        network as it was before training counts as a candidate too, and the
        weights of the best are kept.
        ``"auto"`` holds rows out unless the network is linear
        (``activation="identity"``): such a network overfits no more than
        PCA does, and trains on every row (a linear autoencoder then finds
        the principal subspace of them all). The choice made is
        ``early_stopping_``.
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
        Mean training loss (noisy input against clean target) of every epoch.
    best_loss_ : float
        Lowest value in ``loss_curve_``.
    early_stopping_ : bool
        Whether the last ``fit`` held rows out (``early_stopping`` resolved);
        False after ``partial_fit``, which never does.
    validation_scores_ : list of float or None
        Validation score (minus the held-out denoising error; see
        ``early_stopping``) of every epoch when ``early_stopping_`` is True,
        else None.
    best_validation_score_ : float or None
        Best of ``validation_scores_``; its weights are the ones kept.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    AutoencoderTransformer : The same network trained on clean inputs.
    VariationalAutoencoder : An autoencoder with a probabilistic code.

    References
    ----------
    .. [1] P. Vincent, H. Larochelle, Y. Bengio and P.-A. Manzagol,
       "Extracting and composing robust features with denoising
       autoencoders", ICML 2008.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from skae import DenoisingAutoencoder
    >>> X, _ = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> dae = DenoisingAutoencoder(n_components=16, noise_level=0.2,
    ...                            hidden_layer_sizes=(64,), max_iter=50,
    ...                            tol=1e-3, random_state=0)
    >>> dae.fit(X)
    DenoisingAutoencoder(hidden_layer_sizes=(64,), max_iter=50, n_components=16,
                         noise_level=0.2, random_state=0, tol=0.001)
    >>> noisy = X + np.random.RandomState(0).normal(scale=0.2, size=X.shape)
    >>> denoised = dae.inverse_transform(dae.transform(noisy))
    >>> bool(((denoised - X) ** 2).mean() < ((noisy - X) ** 2).mean())
    True
    """

    _parameter_constraints: dict = {
        **AutoencoderTransformer._parameter_constraints,
        "noise": [StrOptions({"gaussian", "dropout"})],
        "noise_level": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=2,
        *,
        noise="gaussian",
        noise_level=0.1,
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
        super().__init__(
            n_components,
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            loss=loss,
            init=init,
            batch_norm=batch_norm,
            tied_weights=tied_weights,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
            learning_rate=learning_rate,
            max_iter=max_iter,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            shuffle=shuffle,
            random_state=random_state,
            warm_start=warm_start,
            verbose=verbose,
            callbacks=callbacks,
            device=device,
            n_threads=n_threads,
            precision=precision,
            distributed=distributed,
        )
        self.noise = noise
        self.noise_level = noise_level

    def _check_params(self):
        super()._check_params()
        check_noise_level(self.noise, self.noise_level)

    def _can_learn_identity(self):
        return self.noise_level == 0

    @property
    def _training_loss(self):
        return ReconstructionLoss(self.noise, self.noise_level, self.loss)
