"""The parameter entries several estimators share, written once and filled into their docstrings.

An estimator's docstring names a shared entry by a line holding only
``{name}`` where the entry goes; :func:`fill_shared_entries` replaces that
line with the entry, its ``default=`` read from the estimator's own
signature, so that each estimator shows its real default. An entry that
differs on purpose (a parameter that means more in one estimator) is written
out in that estimator's docstring instead. ``{activation_options}``, inside
a line, becomes the set of activations of :data:`~skae._modules.ACTIVATIONS`.
This is how skorch composes ``NeuralNetClassifier``'s docstring from
``NeuralNet``'s: numpydoc, ``help()`` and doctest read the filled text.
"""

import inspect

from ._modules import ACTIVATIONS

#: The ``activation`` options, written as numpydoc writes a set of strings.
ACTIVATION_OPTIONS = "{" + ", ".join(f'"{name}"' for name in ACTIVATIONS) + "}"

#: Shared entries: parameter name -> (type, description). The type leaves out
#: ``default=``, which is each estimator's own.
SHARED_ENTRIES = {
    "n_components": ("int", """
        Size of the latent code.
    """),
    "hidden_layer_sizes": ("int or tuple of int", """
        Widths of the encoder's hidden layers, from the input inwards; the
        decoder uses them in reverse. ``()`` means no hidden layer.
    """),
    "activation": (ACTIVATION_OPTIONS + ' or "auto"', """
        Activation after every hidden layer; the code and output layers are
        linear. ``"auto"`` is ``"gelu"`` in a network with batch
        normalisation (see ``batch_norm``: two hidden layers or more, not
        started at PCA) and ``"relu"`` otherwise, since the PCA start needs
        a piecewise-linear unit. On MNIST's 784-1000-500-250-30 network with
        ``loss="log_loss"``, GELUs ended at 2.75 squared error per test image
        where ReLUs ended at 3.12 (see the Performance page).
        ``activation_`` is the one used.
    """),
    "init": ('{"auto", "pca", "random", "greedy"}', """
        How the network starts. ``"pca"`` sets its weights so that it
        computes PCA's codes and reconstruction exactly (PCA of up to 10,000
        training rows): the first ``2 * n_components`` units of every hidden
        layer carry the principal scores, the others start with no effect
        and learn what PCA misses. Training thus begins where PCA ends, and
        with ``early_stopping`` a network that never beats that start on the
        held-out rows is returned as the PCA of all the rows. It needs a
        piecewise-linear ``activation`` ("relu", "leaky_relu" or
        "identity") and hidden layers at least ``2 * n_components`` wide.
        ``"random"`` draws every weight: dense weights from a normal scaled
        to the fan-in and the activation's gain (He et al.'s for ReLU), so
        that the signal keeps its scale through a deep stack, zero biases.
        ``"greedy"`` starts at random, then trains one layer at a time before
        the whole network trains (Bengio et al., 2006): each encoder layer
        and its mirror in the decoder, as a shallow autoencoder of the codes
        of the layers before it (the first of the rows, with ``loss`` and
        any noise; the others with the squared error of the codes), for
        about a thousand steps each (at least 5 epochs, at most
        ``max_iter``); callbacks see these as phases ``"greedy layer 1"``,
        ``"greedy layer 2"``... and ``n_iter_`` does not count them.
        ``"auto"`` is ``"pca"`` where that is possible (``loss="squared_error"``
        and no ``batch_norm``, besides the conditions above), else ``"random"``.
    """),
    "batch_norm": ('bool or "auto"', """
        Batch-normalise every hidden layer before its activation (Ioffe and
        Szegedy, 2015): batch statistics in training, running statistics in
        ``transform`` and the other methods. It is what lets a deep network
        started at random learn: on MNIST, a 784-1000-500-250-30 network with
        ``loss="log_loss"`` is after 2 epochs where it is after 12 without (see
        the Performance page). ``"auto"`` turns it on for a network with at
        least two hidden layers that does not start at PCA (``init="random"``
        or ``"greedy"``, or a loss other than ``"squared_error"``); the PCA
        start already passes the signal through; the greedy start gains from
        it too (see the user guide's "One layer at a time"). Such a network
        trains through autograd (about twice the time per step of skae's
        hand-written dense step), and a last
        batch of a single row is skipped (a batch of one has no statistics).
    """),
    "tied_weights": ("bool", """
        Tie each dense layer of the decoder to its mirror in the encoder: it
        uses the transpose of that layer's weight, with a bias of its own
        (Hinton and Salakhutdinov, 2006; Vincent et al., 2010). The network
        has about half the weights, which train on the sum of the gradients
        of their two uses; ``batch_norm`` layers are not tied. Works with
        every ``init``, PCA's start included, and with skae's hand-written
        dense step.
    """),
    "loss": ('{"squared_error", "log_loss", "poisson"}', """
        The reconstruction's likelihood, with scikit-learn's names: the
        squared error (a Gaussian; standardised features), ``"log_loss"``
        (a Bernoulli per value: sigmoid output, binary cross-entropy; data
        in [0, 1] such as pixels or min-max scaled features, refused
        outside) or ``"poisson"`` (counts: exponential output, Poisson
        deviance; non-negative data, refused otherwise). ``score_samples``
        and the penalty ``alpha`` follow it; ``inverse_transform`` returns
        values on the data's scale (probabilities, rates).
    """),
    "alpha": ("float", """
        L2 penalty on the weights (not the biases), with the meaning of
        scikit-learn's :class:`~sklearn.neural_network.MLPRegressor`: each
        step minimises the mean over the batch's rows of the per-row loss
        (summed over the features: half the squared error, or the
        cross-entropy or Poisson deviance with ``loss``) plus ``alpha /
        (2 * n_batch_rows) * ||W||**2``, the objective ``MLPRegressor``
        fitted ``X -> X`` with the same ``alpha`` minimises. Applied as
        Adam's coupled weight decay, scaled to the training loss.
    """),
    "batch_size": ('int or "auto"', """
        Rows per minibatch; ``"auto"`` is ``min(200, n_samples)``. Clipped to
        the number of training rows.
    """),
    "learning_rate_init": ("float", """
        Adam's learning rate at the start (see ``learning_rate``).
    """),
    "learning_rate": ('{"constant", "adaptive", "cosine"}', """
        How the learning rate changes during a ``fit``. ``"adaptive"``: it is
        divided by 10 once when progress stalls (see ``tol``); the next stall
        stops training. ``"constant"``: it stays, and the first stall stops
        training. ``"cosine"``: it follows a cosine from
        ``learning_rate_init`` down to zero at epoch ``max_iter`` (Loshchilov
        and Hutter, 2017), set at each epoch; a stall still stops training,
        and reaching ``max_iter`` is the schedule's end, not a failure to
        converge. ``partial_fit`` keeps ``learning_rate_init``.
    """),
    "max_iter": ("int", """
        Maximum number of epochs (passes over the data).
    """),
    "tol": ("float", """
        Relative progress that counts: an epoch makes progress when its loss
        (or validation score) beats the best so far by more than ``tol``
        times the best's magnitude. After ``n_iter_no_change`` epochs without
        progress the learning rate is divided by 10 once; the next such
        stall ends training.
    """),
    "n_iter_no_change": ("int", """
        Training stops after this many consecutive epochs without progress.
    """),
    "early_stopping": ('"auto" or bool', """
        Hold out ``validation_fraction`` of the rows and judge progress by
        their :meth:`score`; the network as it was before training counts as
        a candidate too, and the weights of the best are kept.
        ``"auto"`` holds rows out unless the network is linear
        (``activation="identity"``): such a network overfits no more than
        PCA does, and trains on every row (a linear autoencoder then finds
        the principal subspace of them all). The choice made is
        ``early_stopping_``.
    """),
    "validation_fraction": ("float", """
        Fraction of the rows held out when ``early_stopping_`` is True.
    """),
    "shuffle": ("bool", """
        Shuffle the rows every epoch.
    """),
    "random_state": ("int, RandomState instance or None", """
        Seeds every random draw of training: the weight initialisation, the
        shuffling, the validation split and any noise or sampled codes. An
        int gives the same model on the same machine and settings. Neither
        fitting nor inference touches the global NumPy, torch or ``random``
        state.
    """),
    "warm_start": ("bool", """
        Continue training the previous network on the next ``fit``. The
        parameters that chose the network (its sizes, code width, activation,
        image shape...) must be those it was fitted with: a change raises a
        ValueError naming the parameter (with ``warm_start=False``, ``fit``
        trains a new network), as ``partial_fit`` does.
    """),
    "verbose": ("bool or int", """
        Show training progress (see :class:`~skae.ProgressBar`): a progress
        bar on a terminal, a table of the epochs otherwise, and a last line
        saying why training stopped.
    """),
    "callbacks": ("list of callable or None", """
        Called after every epoch with an :class:`~skae.EpochRecord` (epoch,
        loss, validation score, ...); a callback returning True stops
        training. :class:`~skae.Callback` subclasses also hear when training
        begins and ends.
    """),
    "device": ("str or torch.device", """
        Where to train and infer: ``"auto"`` (CUDA if available, else Apple
        MPS, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
        A ``torch.device`` is saved (pickle, skops) as its string: a loaded
        model's ``device`` is that string.
    """),
    "n_threads": ("int or None", """
        torch intra-op CPU threads used during each call, restored after it.
        ``None`` keeps torch's own setting. At most 1024: more threads than
        cores only slow torch down, and far more end the process. One
        thread, the default, suits a machine shared with other work;
        :doc:`/performance` measures when more threads pay.
    """),
    "precision": ('{"float32", "bfloat16"}', """
        Arithmetic of the training steps: ``"bfloat16"`` runs the forward
        pass and the loss under :func:`torch.autocast` in bfloat16, faster
        where the hardware has bfloat16 matrix units (recent GPUs, CPUs with
        AMX) at some cost in accuracy; weights, gradients and optimizer stay
        float32. Inference computes in float32 (float64 for float64 input).
    """),
    "distributed": ("bool", """
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
    """),
}


def format_default(value):
    """A default as numpydoc shows it: strings in double quotes."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def shared_entry(name, default, indent=""):
    """The lines of the shared entry for parameter ``name``."""
    type_, description = SHARED_ENTRIES[name]
    lines = [f"{indent}{name} : {type_}, default={format_default(default)}"]
    lines += [f"{indent}    {line}" for line in inspect.cleandoc(description).splitlines()]
    return lines


def placeholder(line):
    """The entry name of a placeholder line (``{name}`` alone), else None."""
    text = line.strip()
    if text.startswith("{") and text.endswith("}") and text[1:-1].isidentifier():
        return text[1:-1]
    return None


def fill_shared_entries(cls):
    """Class decorator: fill the placeholders of ``cls.__doc__``.

    Raises KeyError for a placeholder that names no shared entry and
    ValueError for one that names no parameter of ``cls``.
    """
    defaults = inspect.signature(cls.__init__).parameters
    lines = []
    for line in cls.__doc__.replace("{activation_options}", ACTIVATION_OPTIONS).splitlines():
        name = placeholder(line)
        if name is None:
            lines.append(line)
            continue
        if name not in SHARED_ENTRIES:
            raise KeyError(f"{cls.__name__}'s docstring names {{{name}}}, which is no shared "
                           f"entry of skae._docstrings.SHARED_ENTRIES.")
        if name not in defaults:
            raise ValueError(f"{cls.__name__}'s docstring names {{{name}}}, which is no "
                             f"parameter of {cls.__name__}.")
        indent = line[:len(line) - len(line.lstrip())]
        lines += shared_entry(name, defaults[name].default, indent)
    cls.__doc__ = "\n".join(lines)
    return cls
