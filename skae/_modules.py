"""The torch networks behind skae's estimators, and the noise of their inputs.

Plain :class:`torch.nn.Module` classes and tensor functions with no
scikit-learn imports. The estimators build networks with :func:`materialize`
and initialise them with :func:`initialize_parameters` from their own
generator, so that building a network leaves torch's global random state as
it was.
"""

import math

import torch
from torch import nn

from ._losses import LIKELIHOODS

ACTIVATIONS = {
    "identity": nn.Identity,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "logistic": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
}


def mlp(sizes, activation, *, activate_last=False, batch_norm=False):
    """A stack of dense layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    ``activation`` follows every layer but the last (and the last too when
    ``activate_last``). Identity activations are left out of the graph. With
    ``batch_norm``, a :class:`~torch.nn.BatchNorm1d` stands between each
    activated layer and its activation [1]_.

    References
    ----------
    .. [1] S. Ioffe and C. Szegedy, "Batch normalization: accelerating deep
       network training by reducing internal covariate shift", ICML 2015.
    """
    layers = []
    n_layers = len(sizes) - 1
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if index < n_layers - 1 or activate_last:
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_out))
            if activation != "identity":
                layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class TiedLinear(nn.Module):
    """A dense layer whose weight is the transpose of another one's, with its own bias.

    ``mirror`` is the :class:`~torch.nn.Linear` layer it mirrors (``n_in ->
    n_out``); this layer maps ``n_out -> n_in`` with ``mirror.weight.T``.
    The mirror is held as a plain reference, not a submodule: its weight is
    a parameter of the network once, saved once, and trained by the sum of
    the gradients of its two uses.
    """

    def __init__(self, mirror):
        super().__init__()
        # A tuple keeps nn.Module from registering the mirror as a submodule.
        self._mirror = (mirror,)
        self.in_features, self.out_features = mirror.out_features, mirror.in_features
        self.bias = nn.Parameter(torch.empty(self.out_features))

    @property
    def mirror(self):
        """The layer whose weight this one uses, transposed."""
        return self._mirror[0]

    @property
    def weight(self):
        """``mirror.weight.T`` (a view: it follows every update of the mirror)."""
        return self.mirror.weight.t()

    def forward(self, X):
        return nn.functional.linear(X, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, tied=True"


class MLPAutoencoder(nn.Module):
    """A symmetric dense autoencoder.

    The encoder maps ``n_features -> hidden_layer_sizes... -> n_components``
    with a linear code layer; the decoder mirrors it back to ``n_features``
    with a linear output layer: the raw output of the reconstruction
    ``likelihood`` (:mod:`skae._losses`, named by ``loss``), whose link
    gives the reconstruction on the data's scale. With ``batch_norm`` every
    hidden layer is batch-normalised before its activation (see :func:`mlp`).
    With ``tied_weights`` each dense layer of the decoder is a
    :class:`TiedLinear` of its mirror in the encoder (the transpose of its
    weight, a bias of its own) [1]_: about half the weights. Normalisation
    layers are not tied.

    References
    ----------
    .. [1] G. E. Hinton and R. R. Salakhutdinov, "Reducing the dimensionality
       of data with neural networks", Science 313 (5786), 2006 (the decoder
       starts as the transposed encoder, there untied in fine-tuning).
    """

    def __init__(self, n_features, hidden_layer_sizes, n_components, activation,
                 loss="squared_error", batch_norm=False, variance_preserving_init=True,
                 tied_weights=False):
        super().__init__()
        #: Start dense weights at He's (LeCun's) scale (see
        #: :func:`initialize_parameters`); False keeps torch's default, for a
        #: network that will start at PCA (the units beside the carriers).
        self.variance_preserving_init = variance_preserving_init
        widths = [n_features, *hidden_layer_sizes, n_components]
        self.encoder = mlp(widths, activation, batch_norm=batch_norm)
        self.decoder = mlp(widths[::-1], activation, batch_norm=batch_norm)
        if tied_weights:
            mirrors = _linear_layers(self.encoder)[::-1]
            positions = [index for index, layer in enumerate(self.decoder)
                         if isinstance(layer, nn.Linear)]
            for position, mirror in zip(positions, mirrors, strict=True):
                self.decoder[position] = TiedLinear(mirror)
        self.likelihood = LIKELIHOODS[loss]

    def forward(self, X):
        return self.decoder(self.encoder(X))


def _layer_groups(half):
    """The dense layers of ``half`` (an ``nn.Sequential``), each with the
    normalisation and activation that follow it, as ``nn.Sequential`` s."""
    groups = []
    for layer in half:
        if isinstance(layer, (nn.Linear, TiedLinear)):
            groups.append([])
        groups[-1].append(layer)
    return [nn.Sequential(*group) for group in groups]


def greedy_stages(module):
    """The shallow autoencoders of an :class:`MLPAutoencoder`, one per encoder layer.

    Returns ``[(inputs, shallow), ...]`` from the input inwards: ``shallow``
    is the encoder's layer ``i`` (with its normalisation and activation)
    followed by its mirror in the decoder, which reconstructs the layer's
    input; ``inputs`` is the encoder's layers before it, which compute that
    input from a row (an empty ``nn.Sequential``, the identity, for the
    first). Both share the network's modules: training a ``shallow`` trains
    the network, and stacking the stages is the network itself [1]_.

    References
    ----------
    .. [1] Y. Bengio, P. Lamblin, D. Popovici and H. Larochelle, "Greedy
       layer-wise training of deep networks", NeurIPS 2006.
    """
    encoder, decoder = _layer_groups(module.encoder), _layer_groups(module.decoder)
    return [(nn.Sequential(*encoder[:index]), nn.Sequential(layers, mirror))
            for index, (layers, mirror) in enumerate(zip(encoder, decoder[::-1], strict=True))]


# For an activation f with f(v) - f(-v) = gain * v, a pair of units carrying
# f(v) and f(-v) passes v on exactly: piecewise-linear activations only.
_ODD_PART_GAIN = {"relu": 1.0, "identity": 2.0, "leaky_relu": 1.01}


def can_start_at_pca(hidden_layer_sizes, n_components, activation):
    """Whether :func:`start_at_pca` can make this network compute PCA exactly."""
    return activation in _ODD_PART_GAIN and all(
        width >= 2 * n_components for width in hidden_layer_sizes)


def _linear_layers(half):
    return [layer for layer in half if isinstance(layer, (nn.Linear, TiedLinear))]


@torch.no_grad()
def start_at_pca(module, mean, components, activation):
    """Set an :class:`MLPAutoencoder` to compute PCA's reconstruction exactly.

    ``components`` (``n_pca x n_features``, orthonormal rows, ``n_pca <=
    n_components``) and ``mean`` come from a PCA of training rows. The code
    becomes the PCA scores (zero beyond ``n_pca``) and the output the PCA
    reconstruction ``mean + scores @ components``. In every hidden layer the
    first ``2 * n_components`` units carry each score ``v`` as the pair
    ``f(v), f(-v)`` (``f(v) - f(-v)`` is a multiple of ``v`` for the
    piecewise-linear activations), so the network passes it on exactly; the
    other units keep their random weights but start with zero outgoing
    weights, free to learn what PCA misses. Training thus starts from PCA
    and can only be kept if it does better.

    With tied weights only the encoder's weights are set (the decoder's are
    their transposes): the carriers of its middle layers neither read nor
    feed the other units, so that the other units of the decoder start
    silent, and the transposes compute the same reconstruction (the
    ``1 / gain`` moves from the decoder's output layer to its first layer).
    """
    encoder, decoder = _linear_layers(module.encoder), _linear_layers(module.decoder)
    k = encoder[-1].out_features
    n_pca = components.shape[0]
    dtype, device = encoder[0].weight.dtype, encoder[0].weight.device
    scores = torch.zeros(k, components.shape[1], dtype=torch.float64)
    scores[:n_pca] = torch.as_tensor(components, dtype=torch.float64)
    mean = torch.as_tensor(mean, dtype=torch.float64)
    shift = scores @ mean
    eye = torch.eye(k, dtype=torch.float64)
    gain = _ODD_PART_GAIN[activation]

    def put(tensor, value):
        tensor.copy_(value.to(dtype=dtype, device=device))

    tied = isinstance(decoder[0], TiedLinear)

    def carry(layer):  # a middle layer: carriers in, the same carriers out
        layer.bias[:2 * k] = 0.0
        if isinstance(layer, TiedLinear):
            return  # the transpose of its mirror, set in the encoder
        weight = torch.zeros(layer.out_features, layer.in_features, dtype=torch.float64)
        block = torch.cat([torch.cat([eye, -eye], 1), torch.cat([-eye, eye], 1)]) / gain
        weight[:2 * k, :2 * k] = block
        put(layer.weight[:2 * k], weight[:2 * k])
        if tied:  # the other units must not read the carriers either
            layer.weight[2 * k:, :2 * k] = 0.0

    def put_decoder(layer, weight):
        if not tied:
            put(layer.weight, weight)

    if len(encoder) == 1:  # no hidden layer: the code and output layers are PCA's
        put(encoder[0].weight, scores)
        put(encoder[0].bias, -shift)
        put_decoder(decoder[0], scores.T)
        put(decoder[0].bias, mean)
        return module
    # Encoder: the first layer computes the scores as pairs, the last reads them.
    first = encoder[0]
    put(first.weight[:2 * k], torch.cat([scores, -scores]))
    put(first.bias[:2 * k], torch.cat([-shift, shift]))
    for layer in encoder[1:-1]:
        carry(layer)
    last = torch.zeros(encoder[-1].weight.shape, dtype=torch.float64)
    last[:, :2 * k] = torch.cat([eye, -eye], 1) / gain
    put(encoder[-1].weight, last)
    encoder[-1].bias.zero_()
    # Decoder: the first layer splits the code into pairs, the last decodes them.
    if tied:  # the transposes: pairs v / gain, -v / gain, decoded without 1 / gain
        decoder[0].bias.zero_()
    else:
        put(decoder[0].weight[:2 * k], torch.cat([eye, -eye]))
        decoder[0].bias[:2 * k] = 0.0
    for layer in decoder[1:-1]:
        carry(layer)
    output = torch.zeros(decoder[-1].weight.shape, dtype=torch.float64)
    output[:, :2 * k] = torch.cat([scores.T, -scores.T], 1) / gain
    put_decoder(decoder[-1], output)
    put(decoder[-1].bias, mean)
    return module


def corrupt(X, noise, noise_level, generator):
    """``X`` with ``noise`` of strength ``noise_level`` drawn from ``generator``.

    ``"gaussian"`` adds zero-mean noise of standard deviation ``noise_level``;
    ``"dropout"`` zeroes each entry with probability ``noise_level`` and
    scales the kept ones by ``1 / (1 - noise_level)``, as
    :class:`torch.nn.Dropout` does, so the expected input is unchanged.
    ``noise=None`` or ``noise_level=0`` returns ``X`` itself.
    """
    if noise is None or noise_level == 0:
        return X
    if noise == "gaussian":
        return X + noise_level * torch.randn(
            X.shape, generator=generator, device=X.device, dtype=X.dtype)
    if noise == "dropout":
        # torch.nn.functional.dropout takes no generator, so the mask is drawn here.
        keep = torch.rand(X.shape, generator=generator, device=X.device) >= noise_level
        return X * keep / (1.0 - noise_level)
    raise ValueError(f"noise must be 'gaussian', 'dropout' or None, got {noise!r}.")


# The gain of a fan-in-scaled normal initialisation for the activation that
# follows a dense layer (nn.init.calculate_gain's values): the variance of the
# signal is then kept from layer to layer [1]_ (He et al. 2015 for ReLU).
_GAINS = {nn.ReLU: math.sqrt(2.0), nn.LeakyReLU: math.sqrt(2.0 / (1 + 0.01 ** 2)),
          nn.Tanh: 5.0 / 3.0, nn.SELU: 0.75, nn.ELU: math.sqrt(2.0), nn.GELU: math.sqrt(2.0)}


def _dense_gains(module):
    """``{id(linear): gain}`` for the dense layers of every ``nn.Sequential`` in
    ``module``: the gain of the activation that follows the layer (past a
    normalisation layer), 1 for a layer that no known activation follows."""
    gains = {}
    for submodule in module.modules():
        if not isinstance(submodule, nn.Sequential):
            continue
        children = list(submodule)
        for index, child in enumerate(children):
            if type(child) is not nn.Linear:
                continue
            following = [c for c in children[index + 1:index + 3]
                         if not isinstance(c, nn.modules.batchnorm._NormBase)][:1]
            follower = following[0] if following else None
            gains[id(child)] = (_GAINS.get(type(follower), 1.0)
                                if follower is not None and type(follower) is not nn.Linear
                                else 1.0)
    return gains


def initialize_parameters(module, generator):
    """Initialise every parameter of ``module`` from ``generator``.

    In a network that asks for it (``module.variance_preserving_init``, as
    :class:`MLPAutoencoder` does), dense layers: weights drawn from a normal
    of standard deviation ``gain / sqrt(fan_in)``, where ``gain`` is the one of the activation the
    layer feeds (:math:`\\sqrt{2}` for ReLU, He et al. [1]_; 1 for a linear
    code or output layer, LeCun's), and zero biases: the signal keeps its
    scale through a deep stack, where torch's default (a variance of
    ``1 / (3 fan_in)``) shrinks it by a third in each ReLU layer.
    Other dense layers and convolutional layers keep torch's defaults
    (Kaiming-uniform weights, fan-in-scaled uniform biases; the variational
    autoencoder's codes collapsed more often with the fan-in normal start:
    held-out error 0.059 against 0.043 on the digits); normalisation layers
    start as the identity; a :class:`TiedLinear` has only its bias to start
    (at zero): its weight is its mirror's. Every value is drawn from the given generator,
    not torch's global one.

    References
    ----------
    .. [1] K. He, X. Zhang, S. Ren and J. Sun, "Delving deep into rectifiers:
       surpassing human-level performance on ImageNet classification", ICCV 2015.
    """
    preserving = getattr(module, "variance_preserving_init", False)
    gains = _dense_gains(module) if preserving else {}
    for submodule in module.modules():
        if isinstance(submodule, TiedLinear):  # its weight is its mirror's
            nn.init.zeros_(submodule.bias)
        elif isinstance(submodule, nn.Linear) and preserving:
            gain = gains.get(id(submodule), 1.0)
            fan_in = submodule.in_features
            nn.init.normal_(submodule.weight, 0.0, gain / math.sqrt(max(fan_in, 1)),
                            generator=generator)
            if submodule.bias is not None:
                nn.init.zeros_(submodule.bias)
        elif isinstance(submodule, (nn.Linear, nn.modules.conv._ConvNd)):
            nn.init.kaiming_uniform_(submodule.weight, a=math.sqrt(5), generator=generator)
            if submodule.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(submodule.weight)
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(submodule.bias, -bound, bound, generator=generator)
        elif isinstance(submodule, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
            if getattr(submodule, "weight", None) is not None:
                nn.init.ones_(submodule.weight)
            if getattr(submodule, "bias", None) is not None:
                nn.init.zeros_(submodule.bias)
            if hasattr(submodule, "reset_running_stats") and submodule.track_running_stats:
                submodule.reset_running_stats()
        elif isinstance(submodule, nn.RNNBase):
            # torch's default for recurrent layers: every weight and bias
            # uniform in +-1/sqrt(hidden_size).
            bound = 1.0 / math.sqrt(submodule.hidden_size)
            for weight in submodule.parameters(recurse=False):
                nn.init.uniform_(weight, -bound, bound, generator=generator)
        else:
            own = list(submodule.parameters(recurse=False))
            if own:
                raise TypeError(
                    f"initialize_parameters does not know how to initialise "
                    f"{type(submodule).__name__}; add a rule for it."
                )
    return module


def materialize(factory, generator, device):
    """Build ``factory()``, initialise it from ``generator``, move it to ``device``.

    Layers initialise themselves as they are built, drawing from torch's
    global generator: its state is saved and put back around the build, so
    that building a network leaves it as it was. The weights are then drawn
    from the CPU ``generator`` (the same initial weights on every device).
    Building on the ``meta`` device would skip the wasted draws, but on some
    torch releases (2.4, measured) it imports sympy, a third of a second in a
    fresh process, more than a whole small fit.
    """
    with torch.random.fork_rng(devices=[]):
        module = factory()
    initialize_parameters(module, generator)
    return module.to(device)


class GaussianEncoder(nn.Module):
    """An encoder to a diagonal Gaussian: returns ``(mean, log_variance)``.

    A dense body ``n_features -> hidden_layer_sizes...`` (activated after
    every layer) feeds two linear heads of ``n_components`` each.
    """

    def __init__(self, n_features, hidden_layer_sizes, n_components, activation):
        super().__init__()
        widths = [n_features, *hidden_layer_sizes]
        self.body = mlp(widths, activation, activate_last=True)
        self.mean = nn.Linear(widths[-1], n_components)
        self.log_variance = nn.Linear(widths[-1], n_components)

    def forward(self, X):
        hidden = self.body(X)
        return self.mean(hidden), self.log_variance(hidden)


class MLPVariationalAutoencoder(nn.Module):
    """A dense variational autoencoder [1]_.

    ``encoder`` is a :class:`GaussianEncoder`; ``decoder`` mirrors its widths
    back to ``n_features`` with a linear output layer (the raw output of
    the reconstruction ``likelihood``, as in :class:`MLPAutoencoder`). ``forward`` returns
    the posterior parameters only: sampling codes needs a generator, which
    the caller owns.

    References
    ----------
    .. [1] D. P. Kingma and M. Welling, "Auto-encoding variational Bayes",
       ICLR 2014.
    """

    def __init__(self, n_features, hidden_layer_sizes, n_components, activation,
                 loss="squared_error"):
        super().__init__()
        self.encoder = GaussianEncoder(n_features, hidden_layer_sizes, n_components, activation)
        self.decoder = mlp([n_components, *hidden_layer_sizes[::-1], n_features], activation)
        self.likelihood = LIKELIHOODS[loss]

    def forward(self, X):
        return self.encoder(X)


def conv_output_size(size, kernel_size):
    """Length of one spatial axis after a stride-2 convolution padded by ``kernel_size // 2``."""
    return (size + 2 * (kernel_size // 2) - kernel_size) // 2 + 1


class ConvAutoencoder(nn.Module):
    """A convolutional autoencoder on flattened images (or 1-D signals).

    Both halves take and return rows of ``prod(input_shape)`` features: the
    encoder reads a row as an image of ``input_shape`` = ``(channels, height,
    width)`` (2-D convolutions) or ``(channels, length)`` (1-D convolutions),
    halves its spatial size (rounding up) with one stride-2 convolution per
    entry of ``channels``, then maps the flattened feature map through the
    dense ``hidden_layer_sizes`` to a linear code of ``n_components``. The
    decoder mirrors it, with transposed convolutions whose output padding
    restores every size exactly, odd ones included, and a linear output
    (the raw output of the reconstruction ``likelihood``, as in
    :class:`MLPAutoencoder`).
    """

    def __init__(self, input_shape, channels, kernel_size, hidden_layer_sizes, n_components,
                 activation, loss="squared_error"):
        super().__init__()
        self.likelihood = LIKELIHOODS[loss]
        n_axes = len(input_shape) - 1
        conv, conv_transpose = {1: (nn.Conv1d, nn.ConvTranspose1d),
                                2: (nn.Conv2d, nn.ConvTranspose2d)}[n_axes]
        padding = kernel_size // 2
        spatial = [tuple(input_shape[1:])]
        for _ in channels:
            spatial.append(tuple(conv_output_size(size, kernel_size) for size in spatial[-1]))
        widths = [input_shape[0], *channels]
        map_shape = (widths[-1], *spatial[-1])
        n_flat = math.prod(map_shape)

        def activate(layers):
            if activation != "identity":
                layers.append(ACTIVATIONS[activation]())

        encoder = [nn.Unflatten(1, tuple(input_shape))]
        for n_in, n_out in zip(widths[:-1], widths[1:]):
            encoder.append(conv(n_in, n_out, kernel_size, stride=2, padding=padding))
            activate(encoder)
        encoder += [nn.Flatten(), *mlp([n_flat, *hidden_layer_sizes, n_components], activation)]
        self.encoder = nn.Sequential(*encoder)

        decoder = [*mlp([n_components, *hidden_layer_sizes[::-1], n_flat], activation,
                        activate_last=True), nn.Unflatten(1, map_shape)]
        for index in range(len(channels), 0, -1):
            smaller, larger = spatial[index], spatial[index - 1]
            output_padding = tuple(
                target - ((size - 1) * 2 - 2 * padding + kernel_size)
                for size, target in zip(smaller, larger)
            )
            decoder.append(conv_transpose(widths[index], widths[index - 1], kernel_size,
                                          stride=2, padding=padding,
                                          output_padding=output_padding))
            if index > 1:
                activate(decoder)
        decoder.append(nn.Flatten())
        self.decoder = nn.Sequential(*decoder)

    def forward(self, X):
        return self.decoder(self.encoder(X))


class Standardize(nn.Module):
    """A fixed (not trained) per-feature standardisation ``(X - mean) / scale``.

    Its ``mean`` and ``scale`` buffers are set by the caller (materialised
    modules leave buffers uninitialised).
    """

    def __init__(self, n_features):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def forward(self, X):
        return (X - self.mean) / self.scale


class EncoderClassifier(nn.Module):
    """An encoder, its codes standardised, then a dense layer of class logits.

    ``encoder`` maps rows to codes of ``n_codes``; one that returns a tuple
    (such as a :class:`GaussianEncoder`'s ``(mean, log_variance)``) is read
    through its first element. The codes are standardised with fixed
    statistics (``standardize``, set by the caller) so that the output layer
    ``head`` sees features of unit scale whatever the encoder's. With
    ``freeze_encoder`` the encoder's parameters take no gradient and it stays
    in eval mode while the head trains.
    """

    def __init__(self, encoder, n_codes, n_classes, freeze_encoder=False):
        super().__init__()
        self.encoder = encoder
        self.standardize = Standardize(n_codes)
        self.head = nn.Linear(n_codes, n_classes)
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            self.encoder.requires_grad_(False)

    def set_code_statistics(self, mean, scale):
        """Standardise codes with this mean and scale (a constant code is only centred)."""
        mean = torch.as_tensor(mean, dtype=torch.float32)
        scale = torch.as_tensor(scale, dtype=torch.float32)
        scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
        with torch.no_grad():
            self.standardize.mean.copy_(mean)
            self.standardize.scale.copy_(scale)

    def codes(self, X):
        """The encoder's codes, before standardisation."""
        codes = self.encoder(X)
        return codes[0] if isinstance(codes, tuple) else codes

    def encode(self, X):
        """The standardised codes the output layer reads."""
        return self.standardize(self.codes(X))

    def train(self, mode=True):
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()
        return self

    def forward(self, X):
        return self.head(self.encode(X))


def check_noise_level(noise, noise_level):
    """A dropout rate must be below 1 (a Gaussian deviation has no upper bound)."""
    if noise == "dropout" and not noise_level < 1:
        raise ValueError(
            "noise_level is the dropout rate when noise='dropout' and must be "
            f"in [0, 1), got {noise_level!r}.")


class RecurrentEncoder(nn.Module):
    """Rows of ``n_timesteps * n_channels`` values (time-major) to codes.

    A GRU or LSTM of ``n_layers`` reads the sequence one time step at a
    time; the code of ``n_components`` is a linear map of the top layer's
    last hidden state (``code``) plus a linear map of the whole sequence
    (``linear``), which lets the network compute PCA's scores exactly
    (:func:`start_recurrent_at_pca`).
    """

    def __init__(self, n_timesteps, n_channels, cell, hidden_size, n_layers, n_components):
        super().__init__()
        self.sequence_shape = (n_timesteps, n_channels)
        self.rnn = RECURRENT_CELLS[cell](n_channels, hidden_size, n_layers, batch_first=True)
        self.code = nn.Linear(hidden_size, n_components)
        self.linear = nn.Linear(n_timesteps * n_channels, n_components)

    def forward(self, X):
        _, last = self.rnn(X.reshape(X.shape[0], *self.sequence_shape))
        hidden = last[0] if isinstance(last, tuple) else last  # an LSTM's (h, c)
        return self.code(hidden[-1]) + self.linear(X)


class RecurrentDecoder(nn.Module):
    """Codes back to rows of ``n_timesteps * n_channels`` values.

    The code sets the recurrent layers' starting hidden state (through a
    linear layer and tanh) and is their input at every time step; a linear
    readout of the top layer's hidden state gives each step's
    ``n_channels`` values, added to a linear map of the code to the whole
    sequence (``linear``, PCA's reconstruction at the start). The sum is the
    raw output of the reconstruction likelihood.
    """

    def __init__(self, n_timesteps, n_channels, cell, hidden_size, n_layers, n_components):
        super().__init__()
        self.n_timesteps, self.n_layers, self.hidden_size = n_timesteps, n_layers, hidden_size
        self.lstm = cell == "lstm"
        self.start = nn.Linear(n_components, n_layers * hidden_size)
        self.rnn = RECURRENT_CELLS[cell](n_components + n_channels, hidden_size, n_layers,
                                         batch_first=True)
        self.readout = nn.Linear(hidden_size, n_channels)
        self.linear = nn.Linear(n_components, n_timesteps * n_channels)

    def forward(self, Z):
        n = Z.shape[0]
        hidden = torch.tanh(self.start(Z)).reshape(n, self.n_layers, self.hidden_size)
        hidden = hidden.transpose(0, 1).contiguous()
        state = (hidden, torch.zeros_like(hidden)) if self.lstm else hidden
        base = self.linear(Z)
        steps = torch.cat([Z.unsqueeze(1).expand(n, self.n_timesteps, Z.shape[1]),
                           base.reshape(n, self.n_timesteps, -1)], dim=2)
        output, _ = self.rnn(steps, state)
        return self.readout(output).reshape(n, -1) + base


RECURRENT_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RNNAutoencoder(nn.Module):
    """A recurrent autoencoder of sequences given as flat rows.

    Both halves take and return rows of ``n_timesteps * n_channels`` values,
    time-major (``sequences.reshape(n, -1)`` of an array of shape ``(n,
    n_timesteps, n_channels)``): a :class:`RecurrentEncoder` to a linear
    code and a :class:`RecurrentDecoder` that unrolls it back, both with the
    recurrent layers ``cell`` names (GRU or LSTM). ``input_shape`` is the
    shape of one sequence as the data gave it: ``(n_timesteps,)`` (one
    channel) or ``(n_timesteps, n_channels)``.
    """

    def __init__(self, input_shape, cell, hidden_size, n_layers, n_components,
                 loss="squared_error"):
        super().__init__()
        n_timesteps, n_channels = (*input_shape, 1)[:2]
        sizes = (n_timesteps, n_channels, cell, hidden_size, n_layers, n_components)
        self.encoder = RecurrentEncoder(*sizes)
        self.decoder = RecurrentDecoder(*sizes)
        self.likelihood = LIKELIHOODS[loss]

    def forward(self, X):
        return self.decoder(self.encoder(X))


@torch.no_grad()
def start_recurrent_at_pca(module, mean, components):
    """Set an :class:`RNNAutoencoder` to compute PCA's reconstruction exactly.

    ``components`` (``n_pca x n_features``, orthonormal rows, ``n_pca <=
    n_components``) and ``mean`` come from a PCA of training rows. The
    linear paths become PCA's scores and reconstruction; the recurrent
    paths start with zero output weights (the encoder's ``code`` and the
    decoder's ``readout``), so that the network is PCA and training adds to
    it what the recurrent layers find.
    """
    encoder, decoder = module.encoder, module.decoder
    dtype, device = encoder.linear.weight.dtype, encoder.linear.weight.device
    k, n_pca = encoder.linear.out_features, components.shape[0]
    scores = torch.zeros(k, components.shape[1], dtype=torch.float64)
    scores[:n_pca] = torch.as_tensor(components, dtype=torch.float64)
    mean = torch.as_tensor(mean, dtype=torch.float64)

    def put(tensor, value):
        tensor.copy_(value.to(dtype=dtype, device=device))

    put(encoder.linear.weight, scores)
    put(encoder.linear.bias, -scores @ mean)
    put(decoder.linear.weight, scores.T)
    put(decoder.linear.bias, mean)
    for layer in (encoder.code, decoder.readout):
        layer.weight.zero_()
        layer.bias.zero_()
    return module


class SparseMLPAutoencoder(nn.Module):
    """A dense autoencoder whose code is a layer of sigmoid units.

    The encoder maps ``n_features -> hidden_layer_sizes... -> n_components``
    (``activation`` after every hidden layer) and ends in a sigmoid, so that
    each code unit's activation lies in [0, 1]: how strongly the unit
    responds to the row. The decoder mirrors the widths back to
    ``n_features`` with a linear output layer (the raw output of the
    reconstruction ``likelihood``, as in :class:`MLPAutoencoder`). The
    sparsity of the code is the loss's business, not the network's.
    """

    def __init__(self, n_features, hidden_layer_sizes, n_components, activation,
                 loss="squared_error"):
        super().__init__()
        widths = [n_features, *hidden_layer_sizes, n_components]
        self.encoder = nn.Sequential(*mlp(widths, activation), nn.Sigmoid())
        self.decoder = mlp(widths[::-1], activation)
        self.likelihood = LIKELIHOODS[loss]

    def forward(self, X):
        return self.decoder(self.encoder(X))
