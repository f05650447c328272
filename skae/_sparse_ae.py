"""SparseAutoencoder: sigmoid code units kept sparse by a KL-divergence penalty."""

import functools
from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._base import BaseAutoencoder
from ._docstrings import fill_shared_entries

# Mean activations are kept this far from 0 and 1, where the KL divergence
# and its gradient are infinite (a float32 sigmoid saturates to 0 or 1).
_EPS = 1e-6


def bernoulli_kl(target, mean_activation):
    """``sum_j KL(Bernoulli(target) || Bernoulli(mean_activation[j]))``, in nats."""
    rho_hat = mean_activation.clamp(_EPS, 1 - _EPS)
    return (target * torch.log(target / rho_hat)
            + (1 - target) * torch.log((1 - target) / (1 - rho_hat))).sum()


@fill_shared_entries
class SparseAutoencoder(BaseAutoencoder):
    """Sparse autoencoder as a scikit-learn transformer: a feature detector.

    The encoder maps the input (through ``hidden_layer_sizes``, none by
    default) to ``n_components`` sigmoid units; the decoder maps their
    activations back to the input. Training minimises, per row, the
    reconstruction loss plus a penalty that keeps each unit silent most of
    the time [1]_:

    ``reconstruction + sparsity_weight * sum_j KL(sparsity_target || rho_j)``

    where ``rho_j`` is the mean activation of unit ``j`` over the rows of a
    minibatch and ``KL(p || q) = p log(p / q) + (1 - p) log((1 - p) / (1 - q))``
    the divergence between Bernoulli variables of means ``p`` and ``q``.
    ``reconstruction`` is on scikit-learn's per-row scale, summed over the
    features: half the squared error (``loss="squared_error"``) or the
    cross-entropy (``"log_loss"``), as in Ng's notes, where
    ``sparsity_weight`` is called beta. Each unit thus fires for a small
    share of the rows, and what it fires for (its input weights,
    ``components_``) becomes a local feature such as a stroke of a digit.
    The code is typically over-complete (more units than features): the
    penalty, not a bottleneck, keeps it from copying its input.

    ``transform`` returns the units' activations, in [0, 1], to use as
    features (as :class:`~sklearn.neural_network.BernoulliRBM`'s ``transform``
    does); ``inverse_transform`` decodes them. Training goes through autograd
    (the hand-written step of the plain autoencoders does not compute the
    penalty).

    Parameters
    ----------
    {n_components}
    sparsity_target : float, default=0.05
        The mean activation each unit is pushed towards, in (0, 1): the
        share of rows a unit should respond to.
    sparsity_weight : float, default=0.3
        Weight of the KL penalty against the per-row reconstruction loss
        (beta in [1]_). ``0`` trains a plain autoencoder with a sigmoid code.
    hidden_layer_sizes : int or tuple of int, default=()
        Widths of the encoder's hidden layers before the code units, from
        the input inwards; the decoder uses them in reverse. ``()``, the
        default, connects the code units to the input directly (the
        textbook sparse autoencoder).
    activation : {activation_options}, default="relu"
        Activation after every hidden layer (none by default). The code
        units are sigmoid and the output layer is linear whatever it is.
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
        the training loss on them: their reconstruction loss plus the
        penalty of the held-out rows' mean activations. The network as it
        was before training counts as a candidate too, and the weights of
        the best are kept. ``"auto"`` holds rows out (the code is never
        linear). The choice made is ``early_stopping_``.
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
    components_ : ndarray of shape (n_components, `n_features_in_`)
        Each code unit's input weights, one row per unit, to show as an
        image (as ``BernoulliRBM.components_``). With hidden layers, the
        product of the encoder's weight matrices: the unit's input weights
        through the hidden layers as if their activations were the identity
        (with ReLU, where every hidden unit is active), a rough picture.
    module_ : torch.nn.Module
        The trained network, with ``encoder`` and ``decoder`` submodules.
    encoder_ : torch.nn.Module
        The encoder (``module_.encoder``), ending in the sigmoid units.
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
        Mean training loss of every epoch, on the training scale (a mean
        over features, as the other autoencoders'): the reconstruction loss
        plus ``sparsity_weight`` times the penalty scaled alike.
    reconstruction_curve_ : list of float
        Mean reconstruction loss (a mean over features) of every epoch.
    sparsity_curve_ : list of float
        Mean penalty ``sum_j KL(sparsity_target || rho_j)`` over the
        minibatches of every epoch, in nats (unweighted).
    best_loss_ : float
        Lowest value in ``loss_curve_``.
    early_stopping_ : bool
        Whether the last ``fit`` held rows out (``early_stopping`` resolved);
        False after ``partial_fit``, which never does.
    validation_scores_ : list of float or None
        Validation score (minus the training loss of the held-out rows; see
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
    sklearn.neural_network.BernoulliRBM : Binary features learned by an RBM.
    sklearn.decomposition.MiniBatchDictionaryLearning : Sparse codes of a dictionary.
    AutoencoderTransformer : A dense autoencoder with a linear bottleneck code.

    References
    ----------
    .. [1] A. Ng, "Sparse autoencoder", CS294A lecture notes, Stanford
       University, 2011.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skae import SparseAutoencoder
    >>> X, _ = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> sae = SparseAutoencoder(n_components=100, random_state=0).fit(X)
    >>> features = sae.transform(X)
    >>> features.shape, sae.components_.shape
    ((1797, 100), (100, 64))
    >>> bool(abs(features.mean() - sae.sparsity_target) < 0.03)
    True
    """

    _parameter_constraints: dict = {
        **BaseAutoencoder._parameter_constraints,
        "sparsity_target": [Interval(Real, 0, 1, closed="neither")],
        "sparsity_weight": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_components=100,
        *,
        sparsity_target=0.05,
        sparsity_weight=0.3,
        hidden_layer_sizes=(),
        activation="relu",
        loss="squared_error",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.01,
        learning_rate="adaptive",
        max_iter=1000,
        tol=3e-3,
        n_iter_no_change=5,
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
        self.sparsity_target = sparsity_target
        self.sparsity_weight = sparsity_weight
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
        return {"kind": "SparseMLPAutoencoder", "n_features": int(n_features),
                **self._network_params()}

    def _is_linear(self):
        return False  # the code units are sigmoid whatever the activation

    def _can_learn_identity(self):
        return self.sparsity_weight == 0

    def _penalty_weight(self):
        # sparsity_weight is against the per-row loss summed over features;
        # the training loss is a mean over them (the scale alpha is put on).
        return self.sparsity_weight * self._penalty_scale()

    def _loss(self, state):
        return functools.partial(self._training_loss, weight=self._penalty_weight(),
                                 target=float(self.sparsity_target))

    def _training_loss(self, module, X, y, generator, *, weight, target):
        codes = module.encoder(X)
        reconstruction = module.likelihood.training_loss(module.decoder(codes), X)
        sparsity = bernoulli_kl(target, codes.mean(dim=0))
        return reconstruction + weight * sparsity, {"reconstruction": reconstruction,
                                                    "sparsity": sparsity}

    def _validation_scores(self, module, X, y, generator):
        # Minus the training loss, per row: the penalty of the mean
        # activations of these rows (a batch of held-out rows) is shared
        # among them, as in training.
        codes = module.encoder(X)
        reconstruction = module.likelihood.per_row_loss(module.decoder(codes), X)
        sparsity = bernoulli_kl(float(self.sparsity_target), codes.mean(dim=0))
        return -(reconstruction + self._penalty_weight() * sparsity)

    @property
    def components_(self):
        """Each code unit's input weights, ``(n_components, n_features_in_)``."""
        check_is_fitted(self)
        linears = [layer for layer in self.module_.encoder if isinstance(layer, torch.nn.Linear)]
        with torch.no_grad():
            weights = linears[0].weight.double()
            for layer in linears[1:]:
                weights = layer.weight.double() @ weights
        return weights.cpu().numpy().astype(np.float64)

    @property
    def reconstruction_curve_(self):
        """Mean reconstruction loss of every epoch (see Attributes)."""
        return list(self._training.parts_curves.get("reconstruction", []))

    @property
    def sparsity_curve_(self):
        """Mean KL penalty of every epoch (see Attributes)."""
        return list(self._training.parts_curves.get("sparsity", []))
