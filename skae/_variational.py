"""VariationalAutoencoder: a dense VAE with a Gaussian code and likelihood."""

import functools
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import BaseAutoencoder
from ._device import check_memory, make_generator, seed_from_random_state
from ._docstrings import fill_shared_entries
from ._losses import LIKELIHOODS
from ._sources import sample_rows


def gaussian_kl(mean, log_variance):
    """Per-row KL divergence of ``N(mean, diag(exp(log_variance)))`` from ``N(0, I)``."""
    return 0.5 * (mean.square() + log_variance.exp() - 1.0 - log_variance).sum(dim=1)


def gaussian_negative_log_likelihood(reconstruction, X):
    """Per-row ``-log N(X | reconstruction, I)``: half the squared error plus a constant."""
    return LIKELIHOODS["squared_error"].negative_log_likelihood(reconstruction, X)


@fill_shared_entries
class VariationalAutoencoder(BaseAutoencoder):
    """Variational autoencoder (dense) as a scikit-learn transformer.

    The encoder maps each row to the mean and log-variance of a diagonal
    Gaussian posterior over ``n_components`` latent variables; the decoder
    maps a code back to the mean of a Gaussian over the features [1]_.
    Training draws one code per row from the posterior with the
    reparameterisation trick and minimises, per sample,

    ``reconstruction + beta * kl``

    where ``reconstruction = 0.5 * ||x - decoder(z)||**2 + 0.5 * n_features *
    log(2 * pi)`` is the negative log-likelihood of ``x`` under a Gaussian
    of unit variance around the decoded mean (half the sum, not the mean,
    of the squared errors over features; with ``loss="log_loss"`` or
    ``"poisson"``, the negative log-likelihood of a Bernoulli or a Poisson
    per feature, summed over features, as in Kingma and Welling's MNIST
    setup), and ``kl`` is the KL divergence
    of the posterior from the standard normal prior, summed over latent
    dimensions. With ``beta=1`` the loss is the negative evidence lower
    bound (ELBO). Both terms are sums over features or latent dimensions
    and are averaged over the rows of a batch. Because the likelihood's
    variance is fixed at 1, ``beta`` acts as that variance: minimising the
    loss is the same as fitting a unit-``beta`` VAE whose Gaussian
    likelihood has variance ``beta``, and variation smaller than that is
    left to the noise (latent dimensions that would carry it are unused,
    their posteriors equal to the prior). The default, ``beta="auto"``,
    sets it to the variance of an average feature of the training data
    (``beta_``): 1 for standardised data (the textbook ELBO there), about
    0.07 for the digits scaled to [0, 1], where ``beta=1`` would leave every
    latent dimension unused and every sample the average digit. A linear
    VAE then keeps the principal directions that vary more than an
    average feature, as Kaiser's rule does for PCA. Smaller values keep
    more detail; larger ones fewer dimensions.

    ``transform`` returns the posterior means and :meth:`sample` draws
    codes from the prior and decodes them; both are deterministic for a
    fixed seed.

    Parameters
    ----------
    {n_components}
    beta : float or "auto", default="auto"
        Weight of the KL term in the loss [2]_; see above for its meaning as
        the likelihood's variance. ``"auto"`` is the mean variance of the
        features of (up to 10,000 of) the training rows, fixed at the first
        fit of a network (see ``beta_``), with ``loss="squared_error"``, and
        1 (the ELBO) with the other likelihoods, whose variance is not free.
        ``0`` trains a (noisy-code) autoencoder.
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Widths of the encoder's hidden layers, from the input inwards; the
        decoder uses them in reverse. ``()`` means no hidden layer (a linear
        VAE, whose decoder spans the principal subspace).
    activation : {activation_options}, default="relu"
        Activation after every hidden layer. The posterior heads and the
        output layer are linear.
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
        The trained network: ``encoder`` returns ``(mean, log_variance)``,
        ``decoder`` maps codes to reconstructions.
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
    beta_ : float
        The weight of the KL term in training: ``beta``, or the measured
        mean feature variance for ``beta="auto"`` (as of the last call that
        trained the network; ``set_params`` alone does not change it).
    loss_curve_ : list of float
        Mean training loss of every epoch:
        ``reconstruction_curve_[i] + beta_ * kl_curve_[i]``, the negative
        ELBO per sample when ``beta_`` is 1.
    reconstruction_curve_ : list of float
        Mean reconstruction term (Gaussian negative log-likelihood at the
        sampled codes, in nats per sample) of every epoch.
    kl_curve_ : list of float
        Mean KL term (nats per sample) of every epoch.
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
    AutoencoderTransformer : A deterministic autoencoder.
    sklearn.decomposition.FactorAnalysis : The linear Gaussian latent model.
    sklearn.neighbors.KernelDensity : Another density model with ``sample``.

    References
    ----------
    .. [1] D. P. Kingma and M. Welling, "Auto-encoding variational Bayes",
       ICLR 2014.
    .. [2] I. Higgins et al., "beta-VAE: Learning basic visual concepts with
       a constrained variational framework", ICLR 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skae import VariationalAutoencoder
    >>> X, _ = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> vae = VariationalAutoencoder(n_components=4, beta=0.05,
    ...                              hidden_layer_sizes=(64,), max_iter=50,
    ...                              tol=0.1, random_state=0)
    >>> vae.fit(X)
    VariationalAutoencoder(beta=0.05, hidden_layer_sizes=(64,), max_iter=50,
                           n_components=4, random_state=0, tol=0.1)
    >>> vae.transform(X[:3]).shape
    (3, 4)
    >>> vae.sample(5, random_state=0).shape
    (5, 64)
    >>> vae.score_samples(X[:3]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        **BaseAutoencoder._parameter_constraints,
        "beta": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
    }

    def __init__(
        self,
        n_components=2,
        *,
        beta="auto",
        hidden_layer_sizes=(100,),
        activation="relu",
        loss="squared_error",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.003,
        learning_rate="adaptive",
        max_iter=200,
        tol=3e-4,
        n_iter_no_change=10,
        early_stopping=False,
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
        self.beta = beta
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
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

    def _network_architecture(self, n_features, row_shape=None):
        return {"kind": "MLPVariationalAutoencoder", "n_features": int(n_features),
                **self._network_params()}

    def _can_learn_identity(self):
        return self.beta == 0

    def _penalty_scale(self):
        # The loss is per row, summed over features: half the squared error
        # (plus a constant) and the KL term, scikit-learn's scale.
        return 1.0

    @property
    def beta_(self):
        """The weight of the KL term the network was trained with.

        ``beta`` itself, or, with ``beta="auto"``, the mean variance of the
        training features, measured when the network was first fitted; as of
        the last call that trained the network.
        """
        check_is_fitted(self)
        return self._training.settings["beta"]

    def _start_from_data(self, state, source, generator):
        # Not a start of the weights: the value of beta="auto", measured for
        # every new network (so that a later set_params(beta="auto") with
        # warm_start finds it) and kept by a continued fit.
        variance = float(sample_rows(source, generator).var(axis=0).mean())
        state.settings["auto_beta"] = variance if variance > 0 else 1.0
        return False

    def _loss(self, state):
        # The weight of the KL term is resolved for each training call and
        # kept with the network it trains (beta_).
        if self.beta != "auto":
            beta = float(self.beta)
        else:
            beta = state.settings["auto_beta"] if self.loss == "squared_error" else 1.0
        state.settings["beta"] = beta
        return functools.partial(self._training_loss, beta=beta)

    def _training_loss(self, module, X, y, generator, *, beta):
        mean, log_variance = module.encoder(X)
        # Reparameterisation: z = mean + std * eps keeps the draw differentiable.
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        codes = mean + torch.exp(0.5 * log_variance) * eps
        reconstruction = module.likelihood.negative_log_likelihood(module.decoder(codes),
                                                                   X).mean()
        kl = gaussian_kl(mean, log_variance).mean()
        return reconstruction + beta * kl, {"reconstruction": reconstruction, "kl": kl}

    @property
    def reconstruction_curve_(self):
        """Mean reconstruction term of every epoch (see Attributes)."""
        return list(self._training.parts_curves.get("reconstruction", []))

    @property
    def kl_curve_(self):
        """Mean KL term of every epoch (see Attributes)."""
        return list(self._training.parts_curves.get("kl", []))

    def _encode(self, module, X):
        return module.encoder(X)[0]

    def _score_samples_tensor(self, module, X):
        # The likelihood is taken at the posterior mean instead of averaged
        # over the posterior: deterministic and row by row, at the price of
        # omitting the (non-positive, for a locally linear decoder) term
        # -0.5 * trace(J Sigma J^T) of the exact ELBO.
        mean, log_variance = module.encoder(X)
        reconstruction = module.likelihood.negative_log_likelihood(module.decoder(mean), X)
        return -(reconstruction + gaussian_kl(mean, log_variance))

    def score_samples(self, X):
        """Per-row evidence lower bound (ELBO), in nats.

        ``log p(x | decoder(mean)) - KL(q(z | x) || N(0, I))``, with the
        likelihood ``loss`` names (a Gaussian of unit variance, a Bernoulli
        or a Poisson per feature) taken at the posterior mean, so the value
        is deterministic and does not depend on the other rows. It includes
        the likelihood's normalising constant, so it estimates (a lower bound
        on) ``log p(x)`` up to the curvature of the decoder over the
        posterior, and compares with the log-densities of other models such
        as :class:`~sklearn.mixture.GaussianMixture`. ``beta`` does not
        enter it. Greater is better.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            The ELBO of each row.
        """
        return super().score_samples(X)

    def score(self, X, y=None):
        """Mean ELBO per sample (:meth:`score_samples`); greater is better.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to score.
        y : None
            Ignored.

        Returns
        -------
        score : float
            The mean evidence lower bound, in nats per sample.
        """
        return super().score(X, y)

    def sample(self, n_samples=1, random_state=None):
        """Draw codes from the prior ``N(0, I)`` and decode them.

        The decoded means are returned, without the likelihood's noise.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.
        random_state : int, RandomState instance or None, default=None
            Seeds the codes; an int gives the same samples on every call.
            The global random state is not used.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            The generated rows, float64.

        Raises
        ------
        MemoryError
            Before anything is drawn, when the samples would take more
            memory than this machine has.
        """
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        n_samples = int(n_samples)
        # Codes in float32 and float64, and the float64 rows decoded from them.
        check_memory(n_samples * (12 * self._n_features_out + 8 * self.n_features_in_), "cpu",
                     f"sample(n_samples={n_samples})", "draw fewer samples per call")
        generator = make_generator(seed_from_random_state(random_state), "cpu")
        # Codes are drawn on the CPU so that a seed gives the same codes on every device.
        codes = torch.randn((n_samples, self._n_features_out), generator=generator)
        return self._predict(self._decode, codes.numpy().astype(np.float64))
