"""AutoencoderClassifier: unsupervised pretraining, then a softmax classifier."""


import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._autoencoder import AutoencoderTransformer
from ._base import (
    BaseAutoencoder,
    _ProgressPrinter,
    check_enough_rows,
    hold_out,
    resolve_batch_size,
    restored_on_error,
    validate_data_atomic,
    warn_if_not_converged,
)
from ._device import (
    derive_seed,
    make_generator,
    map_location_for,
    resolve_device,
    seed_from_random_state,
    state_dict_to_cpu,
    to_tensor,
    torch_threads,
)
from ._engine import Trainer, fit_loop, make_optimizer, predict_in_chunks
from ._modules import EncoderClassifier, materialize

# Keys of the derived random streams.
_PRETRAIN, _INIT, _SHUFFLE, _SPLIT = range(4)

_TRAINING_PARAMETERS = (
    "alpha", "batch_size", "learning_rate_init", "max_iter", "tol", "n_iter_no_change",
    "early_stopping", "validation_fraction", "shuffle", "random_state", "verbose", "device",
    "n_threads",
)


def _unlabelled(y):
    """Rows whose label is -1 (string labels are never unlabelled)."""
    if y.dtype.kind in "US":
        return np.zeros(y.shape[0], dtype=bool)
    return np.asarray(y == -1, dtype=bool)


def _cross_entropy(module, X, y, generator):
    return F.cross_entropy(module(X), y), {}


def _accuracy(module, X_val, y_val):
    with torch.inference_mode():
        return float((module(X_val).argmax(dim=1) == y_val).float().mean())


class AutoencoderClassifier(ClassifierMixin, BaseEstimator):
    """Classifier pretrained as an autoencoder on labelled and unlabelled rows.

    Training has two phases [1]_. Phase 1 fits a clone of ``autoencoder`` on
    every row of ``X``, labelled or not. Phase 2 builds a network from the
    trained encoder's layers (up to its code) plus a dense softmax output
    layer, and trains it with Adam on the cross-entropy of the labelled rows
    only. Rows labelled ``-1`` are unlabelled, the convention of
    :class:`~sklearn.semi_supervised.SelfTrainingClassifier`.

    With ``freeze_encoder=True`` (the default) phase 2 trains only the
    output layer, a multinomial logistic regression on the codes; this is
    what pays with few labels (see the benchmark in the user guide), where
    fine-tuning every layer on a handful of rows mostly forgets what the
    unlabelled rows taught. ``freeze_encoder=False`` fine-tunes the encoder
    too, which helps once labels are plentiful.

    Parameters
    ----------
    autoencoder : skae autoencoder or None, default=None
        An unfitted skae autoencoder (such as :class:`AutoencoderTransformer`
        or, for images, :class:`ConvolutionalAutoencoder`) to clone and
        pretrain; its own parameters control phase 1. None means
        ``AutoencoderTransformer()``. A ``random_state`` left at None is
        drawn from this estimator's ``random_state``.
    freeze_encoder : bool, default=True
        Keep the pretrained encoder fixed and train only the output layer;
        False fine-tunes the encoder's layers with it.
    pretrain : bool, default=True
        Run phase 1. False skips it: the same network starts from random
        weights and trains on the labelled rows only (the baseline that
        shows what pretraining brings; it needs ``freeze_encoder=False``).
    alpha : float, default=0.0001
        L2 penalty on the weights in phase 2.
    batch_size : int or "auto", default="auto"
        Rows per minibatch in phase 2; ``"auto"`` is ``min(200,
        n_labelled)``.
    learning_rate_init : float, default=0.01
        Adam's learning rate in phase 2. Ten times scikit-learn's MLP default:
        with a frozen encoder phase 2 is a logistic regression on the codes,
        which converges too slowly at 0.001 (and fine-tuning at 0.01 was
        measured no worse on the digits).
    max_iter : int, default=200
        Maximum number of epochs of phase 2.
    tol : float, default=1e-4
        Improvement of the loss (or validation accuracy) that counts as
        progress.
    n_iter_no_change : int, default=10
        Phase 2 stops after this many consecutive epochs without progress.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the labelled rows, stop on their
        accuracy and restore the weights of the best epoch.
    validation_fraction : float, default=0.1
        Fraction of the labelled rows held out when ``early_stopping``.
    shuffle : bool, default=True
        Shuffle the rows every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds phase 2 (initialisation, shuffling, validation split) and the
        autoencoder when its own ``random_state`` is None. An int gives
        bit-identical results on the same device.
    verbose : bool or int, default=False
        Print the loss after every epoch of phase 2.
    device : str or torch.device, default="auto"
        Where phase 2 trains and predicts: ``"auto"`` (CUDA, else Apple MPS,
        else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    n_threads : int or None, default=1
        torch intra-op CPU threads used during each call of phase 2 and
        prediction (None keeps torch's setting).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (``-1``, the unlabelled mark, excluded).
    autoencoder_ : skae autoencoder or None
        The autoencoder fitted in phase 1 (None when ``pretrain=False``); its
        encoder keeps its pretrained weights.
    module_ : torch.nn.Module
        The classifier network: ``encoder`` (a copy of the autoencoder's)
        and ``head`` (the output layer of logits).
    device_ : torch.device
        The device the network lives on.
    batch_size_ : int
        The minibatch size used in phase 2.
    n_iter_ : int
        Number of epochs of phase 2.
    loss_curve_ : list of float
        Mean cross-entropy of every epoch of phase 2.
    best_loss_ : float
        Lowest value in ``loss_curve_``.
    validation_scores_ : list of float or None
        Validation accuracy of every epoch when ``early_stopping``.
    best_validation_score_ : float or None
        Best of ``validation_scores_``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    sklearn.semi_supervised.SelfTrainingClassifier : Semi-supervised
        learning by pseudo-labelling, with the same ``-1`` convention.
    sklearn.neural_network.MLPClassifier : A dense network trained on
        labelled rows only.

    References
    ----------
    .. [1] D. Erhan, Y. Bengio, A. Courville, P.-A. Manzagol, P. Vincent and
       S. Bengio, "Why does unsupervised pre-training help deep learning?",
       JMLR 11, 2010.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from skae import AutoencoderClassifier, AutoencoderTransformer
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> y_partial = y.copy()
    >>> y_partial[np.random.RandomState(0).rand(len(y)) > 0.1] = -1  # 90% unlabelled
    >>> clf = AutoencoderClassifier(
    ...     AutoencoderTransformer(n_components=16, max_iter=100, tol=1e-3),
    ...     tol=1e-3, random_state=0)
    >>> clf.fit(X, y_partial)
    AutoencoderClassifier(autoencoder=AutoencoderTransformer(max_iter=100,
                                                             n_components=16,
                                                             tol=0.001),
                          random_state=0, tol=0.001)
    >>> clf.classes_
    array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    >>> bool(clf.score(X, y) > 0.85)  # accuracy on all rows, 10% of them labelled
    True
    """

    _parameter_constraints: dict = {
        "autoencoder": [None, BaseAutoencoder],
        "freeze_encoder": ["boolean"],
        "pretrain": ["boolean"],
        **{name: BaseAutoencoder._parameter_constraints[name] for name in _TRAINING_PARAMETERS},
    }

    def __init__(
        self,
        autoencoder=None,
        *,
        freeze_encoder=True,
        pretrain=True,
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.01,
        max_iter=200,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        shuffle=True,
        random_state=None,
        verbose=False,
        device="auto",
        n_threads=1,
    ):
        self.autoencoder = autoencoder
        self.freeze_encoder = freeze_encoder
        self.pretrain = pretrain
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.n_threads = n_threads

    # ------------------------------------------------------------------ #
    # The network.

    def _network_factory(self, source, n_features, n_classes, freeze):
        """Builds the encoder of ``source``'s network plus a head of ``n_classes``.

        Every skae autoencoder's encoder returns ``n_components`` codes (or a
        tuple whose first element does), so no forward pass is needed to size
        the head: a forward pass on the meta device imports sympy and
        torch._dynamo, a second in a fresh process.
        """
        factory = source._module_factory(n_features)
        n_codes = source.n_components

        def build():
            network = factory()
            if not isinstance(getattr(network, "encoder", None), torch.nn.Module):
                raise TypeError(
                    f"{type(source).__name__}'s network has no 'encoder' submodule to "
                    "build a classifier on."
                )
            return EncoderClassifier(network.encoder, n_codes, n_classes, freeze)

        return build

    def _build_module(self, source, n_features, n_classes, freeze, generator):
        factory = self._network_factory(source, n_features, n_classes, freeze)
        # The encoder's layers are no wider than the whole autoencoder's.
        self._chunk_rows = source._chunk_size()
        return materialize(factory, generator, "cpu")

    # ------------------------------------------------------------------ #
    # Fitting.

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Pretrain on all rows of ``X``, then train the classifier on the labelled ones.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, labelled and unlabelled rows together.
        y : array-like of shape (n_samples,)
            Class labels; ``-1`` marks an unlabelled row.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        with restored_on_error(self):
            return self._fit(X, y)

    def _fit(self, X, y):
        if self.freeze_encoder and not self.pretrain:
            raise ValueError(
                "freeze_encoder=True with pretrain=False would train the output layer on "
                "a random, untrained encoder; set freeze_encoder=False to train the "
                "network from scratch."
            )
        device = resolve_device(self.device)
        X, y = validate_data_atomic(self, X, y, reset=True, dtype=[np.float32, np.float64])
        check_classification_targets(y)
        labelled = ~_unlabelled(y)
        if not labelled.any():
            raise ValueError(
                "Every row is unlabelled (y == -1); AutoencoderClassifier needs at least "
                "one labelled row to train its classifier."
            )
        check_enough_rows(self, int(labelled.sum()), what="labelled rows")
        classes, y_encoded = np.unique(y[labelled], return_inverse=True)

        seed = seed_from_random_state(self.random_state)
        source = clone(AutoencoderTransformer() if self.autoencoder is None
                       else self.autoencoder)
        if source.random_state is None:
            source.set_params(random_state=derive_seed(seed, _PRETRAIN) % 2**32)
        if self.pretrain:
            source.fit(X)
        else:
            # Unfitted, the source still checks its parameters and reads X's
            # shape (the network factory needs both).
            source._validate_params()
            source._check_params()
            source._validate_X(X, reset=True)

        freeze = self.freeze_encoder
        with torch_threads(self.n_threads):
            module = self._build_module(source, X.shape[1], len(classes), freeze,
                                        make_generator(derive_seed(seed, _INIT), "cpu"))
            module = module.to(device).eval()
            if self.pretrain:
                module.encoder.load_state_dict(source.module_.encoder.state_dict())
            # Pretrained codes are standardised over every row; the scratch
            # baseline sees the labelled rows only.
            self._set_code_statistics(module, X if self.pretrain else X[labelled], device)
            history, batch_size = self._train(module, X[labelled], y_encoded, device, seed)

        self.classes_ = classes
        self.autoencoder_ = source if self.pretrain else None
        self._encoder_source = source
        self._frozen = freeze
        self.module_ = module.eval()
        self.device_ = device
        self.batch_size_ = batch_size
        self.n_iter_ = history.n_epochs
        self.loss_curve_ = history.loss_curve
        self.best_loss_ = history.best_loss
        if self.early_stopping:
            self.validation_scores_ = history.validation_scores
            self.best_validation_score_ = history.best_validation_score
        else:
            self.validation_scores_ = self.best_validation_score_ = None
        return self

    def _set_code_statistics(self, module, X, device):
        """Standardise the codes with their mean and deviation over all rows of ``X``."""
        codes = predict_in_chunks(module.codes, X, device, self._chunk_rows, np.float64,
                                  module=module)
        scale = codes.std(axis=0)
        scale[~(scale > 1e-12)] = 1.0  # a constant code is only centred
        with torch.no_grad():
            module.standardize.mean.copy_(torch.as_tensor(codes.mean(axis=0)))
            module.standardize.scale.copy_(torch.as_tensor(scale))

    def _train(self, module, X, y, device, seed):
        """Phase 2 through the shared engine; returns its history and batch size."""
        if self.freeze_encoder:
            # A frozen encoder gives every row the same code in every epoch:
            # encode once and train the output layer alone on the codes.
            X = predict_in_chunks(module.encode, X, device, self._chunk_rows, np.float32,
                                  module=module)
            network = module.head
        else:
            network = module
        X_tensor = to_tensor(X, device)
        y_tensor = torch.as_tensor(y, dtype=torch.long, device=device)
        validation = None
        if self.early_stopping:
            X_tensor, y_tensor, X_val, y_val = hold_out(
                X_tensor, y_tensor, self.validation_fraction,
                make_generator(derive_seed(seed, _SPLIT), "cpu"))
            validation = (_accuracy, X_val, y_val)
        batch_size = resolve_batch_size(self.batch_size, X_tensor.shape[0])
        trainer = Trainer(
            network, _cross_entropy, make_optimizer(network, self.learning_rate_init, self.alpha),
            batch_size=batch_size,
            shuffle=self.shuffle,
            shuffle_generator=make_generator(derive_seed(seed, _SHUFFLE), "cpu"),
            noise_generator=None,
        )
        history = fit_loop(
            trainer, X_tensor, y_tensor,
            max_iter=self.max_iter,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            validation=validation,
            callbacks=[_ProgressPrinter()] if self.verbose else [],
        )
        warn_if_not_converged(self, history)
        return history, batch_size

    # ------------------------------------------------------------------ #
    # Prediction.

    def predict_proba(self, X):
        """Class probabilities of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            The softmax of the network's outputs, columns in the order of
            ``classes_``; each row sums to 1.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
        module = self.module_
        with torch_threads(self.n_threads):
            proba = predict_in_chunks(
                lambda chunk: torch.softmax(module(chunk), dim=1), X, self.device_,
                self._chunk_rows, np.float64, module=module,
            )
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Most probable class of each row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to classify.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    # ------------------------------------------------------------------ #
    # Tags, expected check failures and pickling.

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags

    def _expected_check_failures(self):
        return {
            "check_classifiers_classes": (
                "trains on the labels [-1, 1], and -1 marks unlabelled rows (the "
                "semi-supervised convention scikit-learn exempts its own "
                "SelfTrainingClassifier and LabelPropagation from this check for)"
            ),
        }

    def __getstate__(self):
        state = dict(super().__getstate__())
        if "module_" in state:
            state["module_"] = state_dict_to_cpu(self.module_)
            state["device_"] = str(self.device_)
        return state

    def __setstate__(self, state):
        module_state = state.get("module_")
        super().__setstate__(state)
        if module_state is None:
            return
        device = map_location_for(state["device_"], type(self).__name__)
        module = self._build_module(self._encoder_source, self.n_features_in_,
                                    len(self.classes_), self._frozen, make_generator(0, "cpu"))
        module.load_state_dict(module_state)
        self.module_ = module.to(device).eval()
        self.device_ = device
