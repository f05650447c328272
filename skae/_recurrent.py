"""RecurrentAutoencoder: a GRU or LSTM autoencoder of sequences."""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from ._autoencoder import principal_components
from ._base import BaseAutoencoder, ReconstructionLoss
from ._docstrings import fill_shared_entries
from ._modules import RECURRENT_CELLS, start_recurrent_at_pca


@fill_shared_entries
class RecurrentAutoencoder(BaseAutoencoder):
    """Recurrent (sequence-to-sequence) autoencoder, as a scikit-learn transformer.

    For sequences of equal length: ``X`` of shape ``(n_samples,
    n_timesteps)`` holds one single-channel sequence per row (the 2-D form
    every scikit-learn tool passes on), ``(n_samples, n_timesteps,
    n_channels)`` sequences of several channels. The encoder is a GRU or
    LSTM (``cell``) of ``n_layers`` layers that reads a sequence one time
    step at a time; a linear layer maps its last hidden state to the code
    of ``n_components``. The decoder unrolls the code back to the sequence:
    the code sets the starting hidden state of its own recurrent layers and
    is their input at every step, and a linear readout of their hidden
    state gives each step's values.

    Beside the recurrent paths each half has a linear one (the whole
    sequence to the code, the code to the whole sequence), added to the
    recurrent path's output; the decoder's recurrent layers also read, at
    each step, the linear path's value for that step, and learn what to add
    to it. So the network can compute PCA exactly, and by default
    (``init``) training starts there: it keeps what the recurrent layers
    improve on PCA's reconstruction, and with ``early_stopping`` returns PCA
    itself when they improve nothing. It is trained with Adam to minimise
    the reconstruction loss ``loss`` names (by default the mean squared
    error over the time steps and channels), by default in small batches
    and with a patience (``n_iter_no_change``) of 20 epochs: the recurrent
    layers leave PCA's start slowly, in many small steps. On the UCR sets of
    ``benchmarks/bench_recurrent.py`` (a few dozen sequences each), batches
    of all the sequences barely moved from the start, and a patience of 10
    stopped 2 fits in 5 there.

    ``transform`` returns codes, ``inverse_transform`` decodes them to
    sequences of the shape ``X`` had in fit, and ``score_samples`` is minus
    each sequence's reconstruction error, for ranking anomalous sequences.
    Every method taking ``X`` accepts the 2-D and the 3-D form; a 2-D ``X``
    for a model fitted on several channels holds each sequence flattened
    time-major (``X3d.reshape(n_samples, -1)``).

    Parameters
    ----------
    {n_components}
    cell : {"gru", "lstm"}, default="gru"
        The recurrent layers of the encoder and the decoder:
        :class:`torch.nn.GRU` or :class:`torch.nn.LSTM`.
    hidden_size : int, default=64
        Width of the hidden state of every recurrent layer.
    n_layers : int, default=1
        Number of stacked recurrent layers in the encoder, and in the decoder.
    init : {"auto", "pca", "random"}, default="auto"
        How the network starts. ``"pca"`` sets the linear paths to PCA's
        scores and reconstruction (PCA of up to 10,000 training sequences)
        and the recurrent paths' output weights to zero: the network starts
        as PCA, and training adds what the recurrent layers find.
        ``"random"`` draws every weight (torch's default initialisation).
        ``"auto"`` is ``"pca"`` with ``loss="squared_error"`` (PCA's
        optimum), else ``"random"``.
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
    n_timesteps_ : int
        Length of the sequences seen during fit.
    n_channels_ : int
        Channels of the sequences seen during fit (1 for 2-D ``X``).
    module_ : torch.nn.Module
        The trained network, with ``encoder`` and ``decoder`` submodules that
        take and return flat rows of ``n_timesteps_ * n_channels_`` values
        (time-major).
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
        Whether the last ``fit`` held sequences out (``early_stopping``
        resolved); False after ``partial_fit``, which never does.
    validation_scores_ : list of float or None
        Validation score of every epoch when ``early_stopping_`` is True.
    best_validation_score_ : float or None
        Best of ``validation_scores_``.
    n_features_in_ : int
        Number of values per sequence seen during fit,
        ``n_timesteps_ * n_channels_``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during fit, when ``X`` has string column names.

    See Also
    --------
    AutoencoderTransformer : A dense autoencoder, which reads a sequence as
        a row of unrelated features.
    ConvolutionalAutoencoder : 1-D convolutions over signals
        (``image_shape=(channels, length)``).

    References
    ----------
    .. [1] N. Srivastava, E. Mansimov and R. Salakhutdinov, "Unsupervised
       learning of video representations using LSTMs", ICML 2015.
    .. [2] P. Malhotra et al., "LSTM-based encoder-decoder for multi-sensor
       anomaly detection", ICML Anomaly Detection Workshop, 2016.

    Examples
    --------
    >>> import numpy as np
    >>> from skae import RecurrentAutoencoder
    >>> rng = np.random.RandomState(0)
    >>> t = np.linspace(0, 2 * np.pi, 20)
    >>> frequency, phase = rng.uniform(1, 2, (100, 1)), rng.uniform(0, 2 * np.pi, (100, 1))
    >>> X = np.sin(frequency * t + phase)  # 100 sequences of 20 time steps
    >>> rae = RecurrentAutoencoder(n_components=2, hidden_size=8, tol=0.01,
    ...                            n_iter_no_change=5, random_state=0)  # a quick fit
    >>> codes = rae.fit_transform(X)
    >>> codes.shape
    (100, 2)
    >>> rae.inverse_transform(codes).shape
    (100, 20)
    >>> spiked = X[:1].copy()
    >>> spiked[0, 10] += 3.0  # a sequence with a spike
    >>> bool(rae.score_samples(spiked)[0] < rae.score_samples(X).min())
    True
    """

    # skl2onnx leaves the exported GRU/LSTM graph disconnected inside a
    # pipeline's ("unable to sort names"); to_onnx on the estimator works.
    _skl2onnx_converter = False

    _parameter_constraints: dict = {
        **BaseAutoencoder._parameter_constraints,
        "cell": [StrOptions(set(RECURRENT_CELLS))],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"auto", "pca", "random"})],
    }

    def __init__(
        self,
        n_components=2,
        *,
        cell="gru",
        hidden_size=64,
        n_layers=1,
        init="auto",
        loss="squared_error",
        alpha=0.0001,
        batch_size=16,
        learning_rate_init=0.01,
        learning_rate="adaptive",
        max_iter=200,
        tol=3e-3,
        n_iter_no_change=20,
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
        self.cell = cell
        self.hidden_size = hidden_size
        self.n_layers = n_layers
        self.init = init
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

    # ------------------------------------------------------------------ #
    # Parameters and the shape of a sequence.

    def _hidden_layer_sizes(self):
        return ()  # no dense hidden layers: the recurrent layers are sized apart

    def _is_linear(self):
        return False

    def _network_params(self):
        return {"n_components": int(self.n_components), "cell": self.cell,
                "hidden_size": int(self.hidden_size), "n_layers": int(self.n_layers),
                "loss": self.loss}

    @property
    def n_timesteps_(self):
        """Length of the sequences seen during fit."""
        return self._training.architecture["input_shape"][0]

    @property
    def n_channels_(self):
        """Channels of the sequences seen during fit."""
        return (*self._training.architecture["input_shape"], 1)[1]

    def _row_shape(self, X):
        # A 3-D array holds sequences of several channels: (n_timesteps,
        # n_channels) per row; validation flattens it (time-major).
        ndim = getattr(X, "ndim", None)
        return tuple(int(size) for size in X.shape[1:]) if ndim == 3 else None

    def _validate_X(self, X, *, reset):
        ndim = getattr(X, "ndim", None)
        if ndim is not None and ndim not in (1, 2, 3):
            raise ValueError(
                f"X has {ndim} dimensions; {type(self).__name__} takes sequences as "
                "(n_samples, n_timesteps) for one channel or (n_samples, n_timesteps, "
                "n_channels).")
        given = self._row_shape(X)
        if given is not None:
            if 0 in given:
                raise ValueError(
                    f"X of shape {X.shape} holds sequences of {given[0]} time steps and "
                    f"{given[1]} channels; n_timesteps and n_channels must be at least 1.")
            # A memmap stays one (reshape is a view), to be read in blocks.
            X = (X if isinstance(X, np.ndarray) else np.asarray(X)).reshape(X.shape[0], -1)
        if not reset and given is not None:
            fitted = (self.n_timesteps_, self.n_channels_)
            for name, value, expected in zip(("n_timesteps", "n_channels"), given, fitted):
                if value != expected:
                    raise ValueError(
                        f"X holds sequences with {name}={value}, but "
                        f"{type(self).__name__} was fitted on sequences of "
                        f"{name}_={expected} (shape (n_samples, {fitted[0]}, "
                        f"{fitted[1]})).")
        return super()._validate_X(X, reset=reset)

    # ------------------------------------------------------------------ #
    # The network and its loss.

    def _network_architecture(self, n_features, row_shape=None):
        params = self._network_params()
        return {"kind": "RNNAutoencoder",
                "input_shape": (int(n_features),) if row_shape is None else tuple(row_shape),
                "cell": params["cell"], "hidden_size": params["hidden_size"],
                "n_layers": params["n_layers"], "n_components": params["n_components"],
                "loss": params["loss"]}

    _training_loss = ReconstructionLoss()

    def _start_from_data(self, state, source, generator):
        if self.init == "random" or (self.init == "auto" and self.loss != "squared_error"):
            return False
        mean, components = principal_components(source, self.n_components, generator)
        start_recurrent_at_pca(state.module, mean, components)
        return True

    def inverse_transform(self, X):
        """Decode latent codes back to sequences.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Codes, as returned by :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_timesteps) or \
(n_samples, n_timesteps, n_channels)
            The reconstructed sequences, in the shape of ``X`` in fit (2-D
            for 2-D input), on the data's scale: probabilities for
            ``loss="log_loss"``, rates for ``loss="poisson"``.
        """
        decoded = super().inverse_transform(X)
        return decoded.reshape(decoded.shape[0], *self._training.architecture["input_shape"])
