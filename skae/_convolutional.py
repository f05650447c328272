"""ConvolutionalAutoencoder: a CNN autoencoder on flattened images."""

import math
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import BaseAutoencoder, ReconstructionLoss
from ._docstrings import fill_shared_entries
from ._modules import check_noise_level


def _positive_ints(value, name, *, allow_int=False):
    values = (value,) if allow_int and isinstance(value, Integral) else tuple(value)
    if not values or any(not isinstance(v, Integral) or isinstance(v, bool) or v < 1
                         for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of positive integers, "
                         f"got {value!r}.")
    return tuple(int(v) for v in values)


@fill_shared_entries
class ConvolutionalAutoencoder(BaseAutoencoder):
    """Convolutional autoencoder for images, as a scikit-learn transformer.

    ``X`` holds one flattened image per row, as scikit-learn expects, and
    ``image_shape`` says how to read it. The encoder is a CNN: each entry of
    ``channels`` adds a stride-2 convolution that halves the spatial size
    (rounding up, so any size works: 8x8, 28x28, 7x9) while the channels
    grow; the flattened feature map then goes through the dense
    ``hidden_layer_sizes`` to a linear code of ``n_components``. The decoder
    mirrors it with transposed convolutions back to the exact input shape.
    It is trained with Adam to minimise the reconstruction loss ``loss``
    names (by default the mean squared error), optionally from corrupted
    inputs (``noise``), as a denoising autoencoder.

    Parameters
    ----------
    {n_components}
    image_shape : tuple of int or None, default=None
        How to read a row: ``(channels, height, width)`` for images (2-D
        convolutions) or ``(channels, length)`` for signals (1-D
        convolutions), in C order (channels first, as
        ``images.reshape(n_samples, -1)`` flattens an array of shape
        ``(n_samples, channels, height, width)``). Its product must equal the
        number of features. None reads a row as a single-channel square
        image when ``n_features`` is a perfect square, and otherwise as a
        single-channel signal of length ``n_features``, so that the defaults
        work on any table. Arrays of images, ``(n_samples, channels, height,
        width)`` or ``(n_samples, height, width)`` (one channel), may also be
        passed to every method taking ``X``; their shape then serves as
        ``image_shape`` (a 3-D array is read as ``(n_samples, channels,
        length)`` when ``image_shape`` has two entries).

        Two entries always mean a signal: ``image_shape=(28, 28)`` reads an
        MNIST row as 28 channels of length 28 (1-D convolutions along each
        row of pixels), not as a 28x28 image; a grey image is ``(1, 28, 28)``
        (or None, for a square one). On MNIST at 30 codes the 1-D reading
        reconstructed far worse (5.98 against 3.57 squared error per test
        image; see the Performance page).
    channels : int or tuple of int, default=(16, 32)
        Output channels of the encoder's convolutions, from the input
        inwards; each one halves the spatial size. The decoder uses them in
        reverse.
    kernel_size : int, default=3
        Side of the (square) convolution kernels.
    hidden_layer_sizes : int or tuple of int, default=()
        Widths of dense layers between the flattened feature map and the
        code; the decoder uses them in reverse. ``()`` maps the feature map
        straight to the code.
    activation : {activation_options}, default="relu"
        Activation after every convolution and hidden layer. The code and
        output layers are linear.
    noise : {"gaussian", "dropout"} or None, default=None
        Corruption of the training inputs, as in
        :class:`DenoisingAutoencoder`: ``"gaussian"`` adds zero-mean noise
        of standard deviation ``noise_level``; ``"dropout"`` zeroes each
        entry with probability ``noise_level`` and scales the others by
        ``1 / (1 - noise_level)``. The loss compares with the clean images.
        None trains a plain autoencoder. Inference never sees noise.
    noise_level : float, default=0.1
        Standard deviation of the Gaussian noise, or the dropout rate (in
        ``[0, 1)``). Unused when ``noise`` is None.
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
        their :meth:`score`, or, with ``noise``, by their denoising error (as
        :class:`DenoisingAutoencoder`: the reconstruction of a corrupted copy,
        the same draw at every epoch, against the clean rows); the network as
        it was before training counts as a candidate too, and the weights of
        the best are kept.
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
    image_shape_ : tuple of int
        How rows are read: ``(channels, height, width)`` or
        ``(channels, length)``.
    module_ : torch.nn.Module
        The trained network, with ``encoder`` and ``decoder`` submodules that
        take and return flattened rows.
    encoder_ : torch.nn.Module
        The encoder (``module_.encoder``).
    decoder_ : torch.nn.Module
        The decoder (``module_.decoder``).
    device_ : torch.device
        The device the network lives on.
    batch_size_ : int
        The minibatch size used.
    n_iter_ : int
        Number of epochs run.
    loss_curve_ : list of float
        Mean training loss of every epoch.
    best_loss_ : float
        Lowest value in ``loss_curve_``.
    early_stopping_ : bool
        Whether the last ``fit`` held rows out (``early_stopping`` resolved);
        False after ``partial_fit``, which never does.
    validation_scores_ : list of float or None
        Validation score of every epoch when ``early_stopping_`` is True.
    best_validation_score_ : float or None
        Best of ``validation_scores_``.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    AutoencoderTransformer : A dense autoencoder, for tables.
    DenoisingAutoencoder : A dense autoencoder trained on corrupted inputs.

    References
    ----------
    .. [1] J. Masci, U. Meier, D. Ciresan and J. Schmidhuber, "Stacked
       convolutional auto-encoders for hierarchical feature extraction",
       ICANN 2011.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skae import ConvolutionalAutoencoder
    >>> X, _ = load_digits(return_X_y=True)
    >>> X = X[:500] / 16.0  # 8x8 images, flattened
    >>> cae = ConvolutionalAutoencoder(n_components=8, channels=(8, 16), max_iter=10,
    ...                                random_state=0)
    >>> codes = cae.fit_transform(X)
    >>> cae.image_shape_
    (1, 8, 8)
    >>> codes.shape
    (500, 8)
    >>> cae.inverse_transform(codes).shape
    (500, 64)
    """

    # score_samples of a squared-error fit is a log-likelihood (skae._likelihood).
    _density_score = True

    _parameter_constraints: dict = {
        **BaseAutoencoder._parameter_constraints,
        "image_shape": [None, tuple, list],
        "channels": ["array-like", Interval(Integral, 1, None, closed="left")],
        "kernel_size": [Interval(Integral, 1, None, closed="left")],
        "noise": [None, StrOptions({"gaussian", "dropout"})],
        "noise_level": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        # 16, not the dense estimators' 2: an image needs more numbers than a
        # table row (one-class MNIST AUC of the 8s: 89 with 16 codes, 81 with
        # 2; the conv AE's user guide has the table).
        n_components=16,
        *,
        image_shape=None,
        channels=(16, 32),
        kernel_size=3,
        hidden_layer_sizes=(),
        activation="relu",
        noise=None,
        noise_level=0.1,
        loss="squared_error",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.005,
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
        self.image_shape = image_shape
        self.channels = channels
        self.kernel_size = kernel_size
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.noise = noise
        self.noise_level = noise_level
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

    # ------------------------------------------------------------------ #
    # Parameters and the shape of a row.

    def _channels(self):
        return _positive_ints(self.channels, "channels", allow_int=True)

    def _check_params(self):
        super()._check_params()
        self._channels()
        if self.image_shape is not None:
            shape = _positive_ints(self.image_shape, "image_shape")
            if len(shape) not in (2, 3):
                raise ValueError(
                    "image_shape must be (channels, height, width) or (channels, length), "
                    f"got {self.image_shape!r}."
                )
        check_noise_level(self.noise, self.noise_level)

    def _network_params(self):
        image_shape = None if self.image_shape is None else tuple(self.image_shape)
        return {**super()._network_params(), "image_shape": image_shape,
                "channels": self._channels(), "kernel_size": int(self.kernel_size)}

    @property
    def image_shape_(self):
        """How rows are read: the fitted network's input shape."""
        return self._training.architecture["input_shape"]

    def _resolve_image_shape(self, n_features, given=None):
        """``image_shape`` for rows of ``n_features`` (``given``: an image array's shape)."""
        if self.image_shape is not None:
            shape = _positive_ints(self.image_shape, "image_shape")
            if math.prod(shape) != n_features:
                raise ValueError(
                    f"image_shape={tuple(self.image_shape)} describes {math.prod(shape)} "
                    f"values per row, but X has {n_features} features."
                )
            if given is not None and given != shape:
                raise ValueError(
                    f"X holds images of shape {given}, but image_shape={shape}."
                )
            return shape
        if given is not None:
            return given
        side = math.isqrt(n_features)
        return (1, side, side) if side * side == n_features else (1, n_features)

    def _row_shape(self, X, *, reset=True):
        # An array of images, (n, channels, height, width) or (n, height,
        # width), is read as its flattened rows plus a shape. A 3-D array is
        # (n, channels, length) when image_shape says signals (the fitted
        # network's when reading rows for it).
        ndim = getattr(X, "ndim", None)
        if ndim not in (3, 4) or not hasattr(X, "reshape"):
            return None
        given = tuple(int(size) for size in X.shape[1:])
        shape = (self.image_shape if reset else self.image_shape_)
        signals = shape is not None and len(tuple(shape)) == 2
        return (1, *given) if ndim == 3 and not signals else given

    def _validate_X(self, X, *, reset):
        given = self._row_shape(X, reset=reset)
        if given is not None:
            # A memmap stays one (reshape is a view), to be read in blocks.
            X = (X if isinstance(X, np.ndarray) else np.asarray(X)).reshape(X.shape[0], -1)
        X = super()._validate_X(X, reset=reset)
        if reset:  # the network is built for this shape (_network_architecture)
            self._resolve_image_shape(X.shape[1], given)
        elif given is not None and given != self.image_shape_:
            raise ValueError(
                f"X holds images of shape {given}, but {type(self).__name__} was "
                f"fitted on images of shape {self.image_shape_}."
            )
        return X

    # ------------------------------------------------------------------ #
    # The network and its loss.

    def _network_architecture(self, n_features, row_shape=None):
        params = self._network_params()
        return {"kind": "ConvAutoencoder",
                "input_shape": self._resolve_image_shape(n_features, row_shape),
                "channels": params["channels"], "kernel_size": params["kernel_size"],
                "hidden_layer_sizes": params["hidden_layer_sizes"],
                "n_components": params["n_components"], "activation": params["activation"],
                "loss": params["loss"]}

    def _can_learn_identity(self):
        return self.noise is None or self.noise_level == 0

    @property
    def _training_loss(self):
        return ReconstructionLoss(self.noise, self.noise_level, self.loss)
