"""AutoencoderClassifier: unsupervised pretraining, then a semi-supervised softmax classifier."""

from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import ClassifierMixin, _fit_context, clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ._base import BaseAutoencoder, NetworkEstimator, validate_numeric
from ._callbacks import InPhase
from ._denoising import DenoisingAutoencoder
from ._docstrings import fill_shared_entries
from ._modules import corrupt
from ._state import RandomStreams


def _unlabelled(y):
    """Rows whose label is -1 (string labels are never unlabelled)."""
    if y.dtype.kind in "US":
        return np.zeros(y.shape[0], dtype=bool)
    return np.asarray(y == -1, dtype=bool)


@fill_shared_entries
class AutoencoderClassifier(ClassifierMixin, NetworkEstimator):
    """Classifier pretrained as an autoencoder on labelled and unlabelled rows.

    Training has two phases, and the unlabelled rows serve in both. Rows
    labelled ``-1`` are unlabelled, the convention of
    :class:`~sklearn.semi_supervised.SelfTrainingClassifier`.

    Phase 1 is unsupervised pretraining [1]_: it fits a clone of
    ``autoencoder`` on every row of ``X``, labelled or not. Phase 2 builds a
    network from the trained encoder's layers (up to its code), a fixed
    standardisation of its codes and a dense softmax output layer, and trains
    it with Adam on every row. A labelled row contributes its cross-entropy.
    An unlabelled row contributes a pseudo-label [2]_: when the network
    predicts a class for it with a probability of at least
    ``pseudo_label_threshold``, that class becomes its target, and the
    network learns to predict it from a copy of the row with Gaussian noise
    (standard deviation 0.3, in the units of ``X``) added: FixMatch's loss
    [3]_, with that noise as the perturbation. The predictions, and so the
    pseudo-labels, are made afresh at every step; at first only the rows
    near the labelled ones are confident enough, and the labels spread from
    there through the dense regions of the data the encoder has learnt. The
    loss of a batch is the mean cross-entropy of the labelled rows (their
    sum over the batch's expected number of them) plus the sum of the
    pseudo-labelled rows' cross-entropy over the batch's unlabelled rows.
    ``pseudo_label_threshold=None`` trains on the labelled rows alone (the
    classifier of earlier versions).

    With a frozen encoder phase 2 trains only the output layer; without
    pseudo-labels that is an L2-penalised multinomial logistic regression on
    the standardised codes. A frozen encoder is what pays with very few
    labels, where fine-tuning every layer on a handful of rows mostly
    forgets what the unlabelled rows taught; with more, fine-tuning the
    encoder too does better. The default, ``freeze_encoder="auto"``,
    chooses by the number of labelled rows per class (measured on the
    digits: see :doc:`/user_guide/pretraining`).

    Parameters
    ----------
    autoencoder : skae autoencoder or None, default=None
        An unfitted skae autoencoder (such as :class:`AutoencoderTransformer`
        or, for images, :class:`ConvolutionalAutoencoder`) to clone and
        pretrain; its own parameters control phase 1. None means
        ``DenoisingAutoencoder(n_components=min(64, n_features),
        hidden_layer_sizes=(256, 128), noise="dropout", noise_level=0.3,
        init="random", batch_norm=False, learning_rate_init=0.001, tol=1e-4,
        early_stopping=False, max_iter=500)``: a wide code, learned from
        inputs with 30% of their entries dropped until the training loss
        stops improving (under 250 epochs on the digits). Its own
        defaults, tuned for reconstruction (a start at PCA, early stopping),
        make poorer codes for classifying (see :doc:`/user_guide/pretraining`).
        A ``random_state`` left at None is drawn from this estimator's
        ``random_state``.
    freeze_encoder : bool or "auto", default="auto"
        True keeps the pretrained encoder fixed and trains only the output
        layer; False fine-tunes the encoder's layers with it. ``"auto"``
        freezes it when there are fewer labelled rows per class than 5 with
        pseudo-labels, or 20 without (and never without pretraining).
    pretrain : bool, default=True
        Run phase 1. False skips it: the same network starts from random
        weights and trains on the labelled rows only (the baseline that
        shows what pretraining brings; it needs ``freeze_encoder=False``).
    pseudo_label_threshold : float in (0, 1) or None, default=0.9
        The probability the network must give a class for an unlabelled row
        to be trained towards it in phase 2 (its pseudo-label). Higher trusts
        fewer, surer predictions. None trains phase 2 on the labelled rows
        alone. Without unlabelled rows it has no effect.
    alpha : float or "auto", default="auto"
        L2 penalty on the weights in phase 2, with the meaning of
        scikit-learn's :class:`~sklearn.neural_network.MLPClassifier`: each
        step minimises the batch's mean cross-entropy plus ``alpha / (2 *
        n_batch_rows) * ||W||**2``. ``"auto"`` is ``1`` with a frozen
        encoder (the penalty of ``LogisticRegression(C=1)`` on the codes of
        the rows it trains on, when one batch holds them all) and
        ``0.0001`` when fine-tuning.
    batch_size : int or "auto", default="auto"
        Rows per minibatch in phase 2; ``"auto"`` is ``min(200, n_rows)``,
        where the rows are every row with pseudo-labels, else the labelled
        ones.
    learning_rate_init : float or "auto", default="auto"
        Adam's learning rate at the start of phase 2 (divided by 10 once when
        progress stalls). ``"auto"`` is ``0.01`` with a frozen encoder (a
        convex problem, which converges too slowly at 0.001) and ``0.001``
        when fine-tuning.
    max_iter : int, default=1000
        Maximum number of epochs of phase 2 (an epoch is one pass over its
        rows: see ``batch_size``).
    tol : float, default=1e-5
        Progress that counts in phase 2: an epoch makes progress when its
        loss (in nats) or validation accuracy beats the
        best so far by more than ``tol``, an absolute amount as in
        :class:`~sklearn.neural_network.MLPClassifier` (the autoencoders'
        ``tol`` is relative: their errors have the data's scale; a
        cross-entropy that falls towards zero on separable labels would
        keep making relative progress). After ``n_iter_no_change`` epochs
        without progress the learning rate is divided by 10 once; the next
        such stall ends phase 2.
    n_iter_no_change : int, default=10
        Phase 2 stops after this many consecutive epochs without progress.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training rows, stop on the
        accuracy of the labelled ones among them and restore the weights of
        the best epoch.
    validation_fraction : float, default=0.1
        Fraction of the training rows (labelled and, with pseudo-labels,
        unlabelled) held out when ``early_stopping``.
    {shuffle}
    random_state : int, RandomState instance or None, default=None
        Seeds phase 2 (initialisation, shuffling, validation split) and the
        autoencoder when its own ``random_state`` is None. An int gives
        bit-identical results on the same device.
    verbose : bool or int, default=False
        Show the progress of both phases (see :class:`~skae.ProgressBar`),
        named ``"pretraining"`` and ``"classifier head"``, and why each
        stopped.
    callbacks : list of callable or None, default=None
        Called after every epoch of both phases with an
        :class:`~skae.EpochRecord` whose ``phase`` is ``"pretraining"`` or
        ``"classifier head"``; a callback returning True stops that phase.
    device : str or torch.device, default="auto"
        Where phase 2 trains and predicts: ``"auto"`` (CUDA, else Apple MPS,
        else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        A ``torch.device`` is saved (pickle, skops) as its string: a loaded
        model's ``device`` is that string.
    n_threads : int or None, default=1
        torch intra-op CPU threads used during each call of phase 2 and
        prediction (None keeps torch's setting); at most 1024.
    {precision}
    {distributed}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (``-1``, the unlabelled mark, excluded).
    autoencoder_ : skae autoencoder or None
        The autoencoder fitted in phase 1 (None when ``pretrain=False``); its
        encoder keeps its pretrained weights.
    freeze_encoder_ : bool
        Whether phase 2 kept the encoder fixed (``freeze_encoder``
        resolved).
    pseudo_labelling_ : bool
        Whether phase 2 trained on the unlabelled rows' pseudo-labels: when
        ``pseudo_label_threshold`` is not None and some rows are unlabelled.
    alpha_ : float
        The L2 penalty phase 2 used (``alpha`` resolved).
    learning_rate_init_ : float
        The learning rate phase 2 started with (``learning_rate_init``
        resolved).
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
        Mean loss of every epoch of phase 2 (the cross-entropy, plus the
        pseudo-labels' term when ``pseudo_labelling_``).
    best_loss_ : float
        Lowest value in ``loss_curve_``.
    early_stopping_ : bool
        Whether phase 2 held labelled rows out (``early_stopping``).
    validation_scores_ : list of float or None
        Validation accuracy of every epoch when ``early_stopping``.
    best_validation_score_ : float or None
        Best of ``validation_scores_``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
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
    .. [2] D.-H. Lee, "Pseudo-label: the simple and efficient semi-supervised
       learning method for deep neural networks", ICML Workshop on
       Challenges in Representation Learning, 2013.
    .. [3] K. Sohn, D. Berthelot, C.-L. Li, Z. Zhang, N. Carlini, E. D.
       Cubuk, A. Kurakin, H. Zhang and C. Raffel, "FixMatch: simplifying
       semi-supervised learning with consistency and confidence", NeurIPS
       2020.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from skae import AutoencoderClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> y_partial = y.copy()
    >>> y_partial[np.random.RandomState(0).rand(len(y)) > 0.1] = -1  # 90% unlabelled
    >>> clf = AutoencoderClassifier(random_state=0).fit(X, y_partial)
    >>> clf.classes_
    array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    >>> clf.pseudo_labelling_, clf.freeze_encoder_  # 174 labelled rows: fine-tuned
    (True, False)
    >>> unlabelled = y_partial == -1
    >>> bool(clf.score(X[unlabelled], y[unlabelled]) > 0.94)  # the 1,623 rows without a label
    True
    """

    #: The perturbation of the unlabelled rows' inputs that their pseudo-labels
    #: must survive: Gaussian noise in the units of X.
    _pseudo_label_noise = ("gaussian", 0.3)

    # The cross-entropy is in nats whatever the data: tol is absolute.
    _relative_tol = False

    _parameter_constraints: dict = {
        **NetworkEstimator._parameter_constraints,
        "autoencoder": [None, BaseAutoencoder],
        "freeze_encoder": ["boolean", StrOptions({"auto"})],
        "alpha": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "learning_rate_init": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "pretrain": ["boolean"],
        "pseudo_label_threshold": [None, Interval(Real, 0, 1, closed="neither")],
        # The autoencoders' "auto" turns on for a nonlinear network, and the
        # classifier's always is one: its default stays off, as MLPClassifier's.
        "early_stopping": ["boolean"],
    }

    def __init__(
        self,
        autoencoder=None,
        *,
        freeze_encoder="auto",
        pretrain=True,
        pseudo_label_threshold=0.9,
        alpha="auto",
        batch_size="auto",
        learning_rate_init="auto",
        max_iter=1000,
        tol=1e-5,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        shuffle=True,
        random_state=None,
        verbose=False,
        callbacks=None,
        device="auto",
        n_threads=1,
        precision="float32",
        distributed=False,
    ):
        self.autoencoder = autoencoder
        self.freeze_encoder = freeze_encoder
        self.pretrain = pretrain
        self.pseudo_label_threshold = pseudo_label_threshold
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
        self.callbacks = callbacks
        self.device = device
        self.n_threads = n_threads
        self.precision = precision
        self.distributed = distributed

    # ------------------------------------------------------------------ #
    # The network and its loss.

    def _network_architecture(self, n_features, row_shape=None):
        # The encoder of the autoencoder as it was fitted (or, without
        # pretraining, as its parameters describe it), then the head for
        # classes_: set by fit before the network is built.
        source = self._encoder_source
        if source.__sklearn_is_fitted__():
            encoder = source._training.architecture
        else:
            source._validate_params()
            source._check_params()
            encoder = source._network_architecture(n_features)
        return {"kind": "EncoderClassifier", "encoder": encoder,
                "n_codes": encoder["n_components"], "n_classes": len(self.classes_),
                "freeze_encoder": self.freeze_encoder_}

    @property
    def _trains_on_codes(self):
        return self.freeze_encoder_ and not self.pseudo_labelling_

    def _logits(self, module, X):
        # A frozen encoder without pseudo-labels is trained on codes computed
        # once (see _prepare_training).
        return module.head(X) if self._trains_on_codes else module(X)

    def _training_loss(self, module, X, y, generator):
        # Without pseudo-labels every training row is labelled.
        return F.cross_entropy(self._logits(module, X), y), {}

    def _loss(self, state):
        if not self.pseudo_labelling_:
            return self._training_loss
        share = state.settings["labelled_share"]
        return lambda module, X, y, generator: self._semi_supervised_loss(
            module, X, y, generator, share)

    def _semi_supervised_loss(self, module, X, y, generator, labelled_share):
        """The cross-entropy of the batch's labelled rows plus that of the
        confident pseudo-labels of its unlabelled rows, predicted on the clean
        rows and learnt from perturbed ones (FixMatch's loss, with Gaussian
        input noise as its augmentation)."""
        labelled = y >= 0
        logits = module(X)
        # An unbiased estimate of the mean cross-entropy over every labelled
        # row, whatever share of this batch they are.
        supervised = F.cross_entropy(logits[labelled], y[labelled], reduction="sum") / (
            X.shape[0] * labelled_share)
        unlabelled = ~labelled
        n_unlabelled = int(unlabelled.sum())
        pseudo = logits.new_zeros(())
        if n_unlabelled:
            confidence, guess = torch.softmax(logits[unlabelled].detach(), dim=1).max(dim=1)
            confident = confidence >= self.pseudo_label_threshold
            if confident.any():
                noisy = corrupt(X[unlabelled][confident], *self._pseudo_label_noise, generator)
                pseudo = F.cross_entropy(module(noisy), guess[confident],
                                         reduction="sum") / n_unlabelled
        return supervised + pseudo, {"cross_entropy": supervised.detach(),
                                     "pseudo_labels": pseudo.detach()}

    def _validation_scores(self, module, X, y, generator):
        correct = (self._logits(module, X).argmax(dim=1) == y).to(torch.float32)
        return (correct, y >= 0) if self.pseudo_labelling_ else correct

    def _optimizer_settings(self):
        return self.learning_rate_init_, self.alpha_

    def _check_params(self):
        super()._check_params()
        if self.freeze_encoder is True and not self.pretrain:
            raise ValueError(
                "freeze_encoder=True with pretrain=False would train the output layer on "
                "a random, untrained encoder; set freeze_encoder=False to train the "
                "network from scratch.")

    # ------------------------------------------------------------------ #
    # Fitting.

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Pretrain on every row of ``X``, then train on labels and pseudo-labels.

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
        with self._process_group(), self._restored_on_error():
            self._check_params()
            self._resolve_device()  # an unusable device fails before pretraining
            X, y = validate_numeric(self, X, y, reset=True)
            check_classification_targets(y)
            labelled = ~_unlabelled(y)
            if not labelled.any():
                raise ValueError(
                    "Every row is unlabelled (y == -1); AutoencoderClassifier needs at least "
                    "one labelled row to train its classifier.")
            self._check_enough_rows(int(labelled.sum()), what="labelled rows")
            self.classes_, y_encoded = np.unique(y[labelled], return_inverse=True)
            seed = self._draw_seed()
            source = self._pretrain(X, seed)
            self.autoencoder_ = source if self.pretrain else None
            self._encoder_source = source
            n_labelled = int(labelled.sum())
            self.pseudo_labelling_ = bool(self.pseudo_label_threshold is not None
                                          and n_labelled < y.shape[0])
            # Below this many labelled rows a class, fine-tuning a whole
            # encoder on them forgets more than it learns (measured on the
            # digits: see the user guide); pseudo-labels let it learn from
            # fewer.
            rows_per_class = 5 if self.pseudo_labelling_ else 20
            self.freeze_encoder_ = bool(
                self.pretrain and n_labelled < rows_per_class * len(self.classes_)
                if self.freeze_encoder == "auto" else self.freeze_encoder)
            frozen = self.freeze_encoder_
            self.alpha_ = ((1.0 if frozen else 1e-4)
                           if self.alpha == "auto" else float(self.alpha))
            self.learning_rate_init_ = ((0.01 if frozen else 0.001)
                                        if self.learning_rate_init == "auto"
                                        else float(self.learning_rate_init))
            targets = np.full(y.shape[0], -1, dtype=np.int64)
            targets[labelled] = y_encoded
            self._train(X, targets)
        return self

    _phase = "classifier head"

    def _prepare_training(self, state, X, y, infer):
        """The head's start: the pretrained encoder, its codes' statistics, and
        the rows to train on: every row when pseudo-labelling, else the
        labelled ones (``y >= 0``), encoded once when the encoder is frozen."""
        network = state.module
        labelled = y >= 0
        if self.pretrain:
            network.encoder.load_state_dict(self._encoder_source.encoder_.state_dict())
        # Pretrained codes are standardised over every row; the scratch
        # baseline sees the labelled rows only.
        codes = infer(lambda module, rows: module.codes(rows),
                      X if self.pretrain else X[labelled], np.float64)
        network.set_code_statistics(codes.mean(axis=0), codes.std(axis=0))
        if self.pseudo_labelling_:
            state.settings["labelled_share"] = float(labelled.mean())
            return X, y
        inputs = X[labelled]
        if self._trains_on_codes:
            # A frozen encoder gives every row the same code in every
            # epoch: encode once and train the output layer alone on them.
            inputs = infer(lambda module, rows: module.encode(rows), inputs, np.float32)
        return inputs, y[labelled]

    def _pretrain(self, X, seed):
        """A clone of ``autoencoder``, fitted on every row of ``X`` when ``pretrain``."""
        source = clone(self.autoencoder) if self.autoencoder is not None else \
            DenoisingAutoencoder(n_components=min(64, X.shape[1]), hidden_layer_sizes=(256, 128),
                                 noise="dropout", noise_level=0.3, init="random",
                                 batch_norm=False, learning_rate_init=0.001, tol=1e-4,
                                 early_stopping=False, max_iter=500)
        if source.get_params().get("random_state", 0) is None:
            source.set_params(random_state=RandomStreams(seed).seed_for(
                RandomStreams.PRETRAIN) % 2**32)
        if not self.pretrain:
            return source
        own = source.get_params()
        watchers = [InPhase(callback, "pretraining") for callback in self._callbacks()]
        source.set_params(callbacks=[*(own.get("callbacks") or ()), *watchers],
                          verbose=own.get("verbose") and not self.verbose)
        source.fit(X)
        if source._training.stop_reason == "interrupted":
            # The engine ends the phase a Ctrl-C arrives in and keeps its
            # weights; here that Ctrl-C is for the whole fit, which a
            # classifier with an untrained head would not be.
            raise KeyboardInterrupt(
                f"{type(self).__name__}: pretraining was interrupted, so the fit stopped "
                "before the classifier was trained; the estimator is as it was before fit.")
        return source.set_params(callbacks=own.get("callbacks"), verbose=own.get("verbose"))

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
        X = validate_numeric(self, X, reset=False)
        proba = self._predict(lambda module, rows: torch.softmax(module(rows), dim=1), X,
                              np.float64)
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

    def _expected_check_failures(self):
        return {
            "check_classifiers_classes": (
                "trains on the labels [-1, 1], and -1 marks unlabelled rows (the "
                "semi-supervised convention scikit-learn exempts its own "
                "SelfTrainingClassifier and LabelPropagation from this check for)"
            ),
        }
