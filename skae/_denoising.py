"""DenoisingAutoencoder: a dense autoencoder trained to undo input noise."""

from numbers import Real

from sklearn.utils._param_validation import Interval, StrOptions

from ._autoencoder import AutoencoderTransformer
from ._base import BaseAutoencoder, ReconstructionLoss
from ._modules import check_noise_level


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
    n_components : int, default=2
        Size of the latent code.
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
    hidden_layer_sizes : int or tuple of int, default=(128,)
        Widths of the encoder's hidden layers, from the input inwards; the
        decoder uses them in reverse. ``()`` means no hidden layer.
    activation : {"identity", "relu", "tanh", "logistic", "elu", "gelu", \
"leaky_relu", "selu", "softplus"}, default="relu"
        Activation after every hidden layer. The code and output layers are
        linear.
    init : {"auto", "pca", "random"}, default="auto"
        How the network starts. ``"pca"`` sets its weights so that it
        computes PCA's codes and reconstruction exactly (PCA of up to 10,000
        training rows): the first ``2 * n_components`` units of every hidden
        layer carry the principal scores, the others start with no effect
        and learn what PCA misses. Training thus begins where PCA ends, and
        with ``early_stopping`` a network that never beats that start on the
        held-out rows is returned as the PCA of all the rows. It needs a
        piecewise-linear ``activation`` ("relu", "leaky_relu" or
        "identity") and hidden layers at least ``2 * n_components`` wide.
        ``"random"`` draws every weight (torch's default initialisation).
        ``"auto"`` is ``"pca"`` where that is possible (``loss="squared_error"``),
        else ``"random"``.
    loss : {"squared_error", "log_loss", "poisson"}, default="squared_error"
        The reconstruction's likelihood, with scikit-learn's names: the
        squared error (a Gaussian; standardised features), ``"log_loss"``
        (a Bernoulli per value: sigmoid output, binary cross-entropy; data
        in [0, 1] such as pixels or min-max scaled features, refused
        outside) or ``"poisson"`` (counts: exponential output, Poisson
        deviance; non-negative data, refused otherwise). ``score_samples``
        and the penalty ``alpha`` follow it; ``inverse_transform`` returns
        values on the data's scale (probabilities, rates).
    alpha : float, default=0.0001
        L2 penalty on the weights (not the biases), with the meaning of
        scikit-learn's :class:`~sklearn.neural_network.MLPRegressor`: each
        step minimises the mean over the batch's rows of the per-row loss
        (summed over the features: half the squared error) plus ``alpha /
        (2 * n_batch_rows) * ||W||**2``, the objective ``MLPRegressor``
        fitted ``X -> X`` with the same ``alpha`` minimises. Applied as
        Adam's coupled weight decay, scaled to the training loss.
    batch_size : int or "auto", default="auto"
        Rows per minibatch; ``"auto"`` is ``min(200, n_samples)``. Clipped to
        the number of training rows.
    learning_rate_init : float, default=3e-3
        Adam's learning rate at the start (divided by 10 once when progress
        stalls; see ``tol``).
    max_iter : int, default=200
        Maximum number of epochs (passes over the data).
    tol : float, default=3e-3
        Relative progress that counts: an epoch makes progress when its loss
        (or validation score) beats the best so far by more than ``tol``
        times the best's magnitude. After ``n_iter_no_change`` epochs without
        progress the learning rate is divided by 10 once; the next such
        stall ends training.
    n_iter_no_change : int, default=10
        Training stops after this many consecutive epochs without progress.
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
    validation_fraction : float, default=0.1
        Fraction of the rows held out when ``early_stopping_`` is True.
    shuffle : bool, default=True
        Shuffle the rows every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds every random draw of training: the weight initialisation, the
        shuffling, the validation split and any noise or sampled codes. An
        int gives the same model on the same machine and settings. Neither
        fitting nor inference touches the global NumPy, torch or ``random``
        state.
    warm_start : bool, default=False
        Continue training the previous network on the next ``fit``. The
        parameters that chose the network (its sizes, code width, activation,
        image shape...) must be those it was fitted with: a change raises a
        ValueError naming the parameter (with ``warm_start=False``, ``fit``
        trains a new network), as ``partial_fit`` does.
    verbose : bool or int, default=False
        Show training progress (see :class:`~skae.ProgressBar`): a progress
        bar on a terminal, a table of the epochs otherwise, and a last line
        saying why training stopped.
    callbacks : list of callable or None, default=None
        Called after every epoch with an :class:`~skae.EpochRecord` (epoch,
        loss, validation score, ...); a callback returning True stops
        training. :class:`~skae.Callback` subclasses also hear when training
        begins and ends.
    device : str or torch.device, default="auto"
        Where to train and infer: ``"auto"`` (CUDA if available, else Apple
        MPS, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        A ``torch.device`` is saved (pickle, skops) as its string: a loaded
        model's ``device`` is that string.
    n_threads : int or None, default=1
        torch intra-op CPU threads used during each call, restored after it.
        One thread is the measured default: on a 2-core machine it was at
        most 1.4x slower than two threads when the machine was idle, and two
        threads were 2.2-2.8x slower than one when another process was busy.
        ``None`` keeps torch's own setting. At most 1024: more threads than
        cores only slow torch down, and far more end the process.
    precision : {"float32", "bfloat16"}, default="float32"
        Arithmetic of the training steps: ``"bfloat16"`` runs the forward
        pass and the loss under :func:`torch.autocast` in bfloat16, faster
        where the hardware has bfloat16 matrix units (recent GPUs, CPUs with
        AMX) at some cost in accuracy; weights, gradients and optimizer stay
        float32. Inference computes in float32 (float64 for float64 input).
    distributed : bool, default=False
        Train one model on all the processes of a :mod:`torch.distributed`
        process group with :class:`~torch.nn.parallel.DistributedDataParallel`:
        every process passes the same rows and trains on its share of each
        epoch, ``batch_size`` rows per process and step; losses and early
        stopping are agreed by all, and each process ends with the same
        fitted estimator. The script may initialise the group; in processes
        started by ``torchrun`` (or a launcher setting the same ``RANK``,
        ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` and ``LOCAL_RANK``)
        without one, each fit starts one (NCCL when it trains on the GPUs,
        else gloo) and destroys it after. ``device="auto"`` is then this
        process's GPU (``cuda:LOCAL_RANK``) under NCCL, the CPU under gloo.
        Not for use inside a parallel search.

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
        **BaseAutoencoder._parameter_constraints,
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
        activation="relu",
        init="auto",
        loss="squared_error",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.003,
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
            alpha=alpha,
            batch_size=batch_size,
            learning_rate_init=learning_rate_init,
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
