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


def mlp(sizes, activation, *, activate_last=False):
    """A stack of dense layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    ``activation`` follows every layer but the last (and the last too when
    ``activate_last``). Identity activations are left out of the graph.
    """
    layers = []
    n_layers = len(sizes) - 1
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if (index < n_layers - 1 or activate_last) and activation != "identity":
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MLPAutoencoder(nn.Module):
    """A symmetric dense autoencoder.

    The encoder maps ``n_features -> hidden_layer_sizes... -> n_components``
    with a linear code layer; the decoder mirrors it back to ``n_features``
    with a linear output layer: the raw output of the reconstruction
    ``likelihood`` (:mod:`skae._losses`, named by ``loss``), whose link
    gives the reconstruction on the data's scale.
    """

    def __init__(self, n_features, hidden_layer_sizes, n_components, activation,
                 loss="squared_error"):
        super().__init__()
        widths = [n_features, *hidden_layer_sizes, n_components]
        self.encoder = mlp(widths, activation)
        self.decoder = mlp(widths[::-1], activation)
        self.likelihood = LIKELIHOODS[loss]

    def forward(self, X):
        return self.decoder(self.encoder(X))


# For an activation f with f(v) - f(-v) = gain * v, a pair of units carrying
# f(v) and f(-v) passes v on exactly: piecewise-linear activations only.
_ODD_PART_GAIN = {"relu": 1.0, "identity": 2.0, "leaky_relu": 1.01}


def can_start_at_pca(hidden_layer_sizes, n_components, activation):
    """Whether :func:`start_at_pca` can make this network compute PCA exactly."""
    return activation in _ODD_PART_GAIN and all(
        width >= 2 * n_components for width in hidden_layer_sizes)


def _linear_layers(half):
    return [layer for layer in half if isinstance(layer, nn.Linear)]


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

    def carry(layer):  # a middle layer: carriers in, the same carriers out
        weight = torch.zeros(layer.out_features, layer.in_features, dtype=torch.float64)
        block = torch.cat([torch.cat([eye, -eye], 1), torch.cat([-eye, eye], 1)]) / gain
        weight[:2 * k, :2 * k] = block
        put(layer.weight[:2 * k], weight[:2 * k])
        layer.bias[:2 * k] = 0.0

    if len(encoder) == 1:  # no hidden layer: the code and output layers are PCA's
        put(encoder[0].weight, scores)
        put(encoder[0].bias, -shift)
        put(decoder[0].weight, scores.T)
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
    put(decoder[0].weight[:2 * k], torch.cat([eye, -eye]))
    decoder[0].bias[:2 * k] = 0.0
    for layer in decoder[1:-1]:
        carry(layer)
    output = torch.zeros(decoder[-1].weight.shape, dtype=torch.float64)
    output[:, :2 * k] = torch.cat([scores.T, -scores.T], 1) / gain
    put(decoder[-1].weight, output)
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


def initialize_parameters(module, generator):
    """Initialise every parameter of ``module`` from ``generator``.

    Uses the same distributions as torch's defaults (Kaiming-uniform weights
    and fan-in-scaled uniform biases for dense and convolutional layers; ones
    and zeros for normalisation layers), but draws from the given generator
    instead of the global one.
    """
    for submodule in module.modules():
        if isinstance(submodule, (nn.Linear, nn.modules.conv._ConvNd)):
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
