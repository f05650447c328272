"""The torch networks: shapes, initialisation, materialisation, noise."""

import math

import pytest
import torch
from numpy.testing import assert_allclose

from skae._modules import (
    ConvAutoencoder,
    EncoderClassifier,
    GaussianEncoder,
    MLPAutoencoder,
    MLPVariationalAutoencoder,
    corrupt,
    initialize_parameters,
    materialize,
    mlp,
)


def test_mlp_activates_every_layer_but_the_last():
    net = mlp([5, 4, 3], "tanh")
    assert [type(layer).__name__ for layer in net] == ["Linear", "Tanh", "Linear"]
    assert [type(layer).__name__ for layer in mlp([5, 4, 3], "relu", activate_last=True)] == [
        "Linear", "ReLU", "Linear", "ReLU"]
    assert all(isinstance(layer, torch.nn.Linear) for layer in mlp([5, 4, 3], "identity"))


def test_autoencoder_mirrors_its_encoder():
    net = MLPAutoencoder(10, (8, 6), 2, "relu")
    encoder_widths = [layer.out_features for layer in net.encoder if hasattr(layer, "out_features")]
    decoder_widths = [layer.out_features for layer in net.decoder if hasattr(layer, "out_features")]
    assert encoder_widths == [8, 6, 2] and decoder_widths == [6, 8, 10]
    assert net(torch.zeros(4, 10)).shape == (4, 10)


def test_gaussian_encoder_and_vae_shapes():
    mean, log_variance = GaussianEncoder(7, (5,), 3, "relu")(torch.zeros(2, 7))
    assert mean.shape == log_variance.shape == (2, 3)
    vae = MLPVariationalAutoencoder(7, (5,), 3, "relu")
    assert vae.decoder(torch.zeros(2, 3)).shape == (2, 7)


@pytest.mark.parametrize("input_shape", [(1, 7, 9), (2, 8, 8), (3, 11)])
def test_conv_autoencoder_restores_every_size(input_shape):
    net = ConvAutoencoder(input_shape, (4, 8), 3, (), 2, "relu")
    n_features = math.prod(input_shape)
    assert net(torch.zeros(3, n_features)).shape == (3, n_features)


def test_materialize_draws_only_from_the_given_generator():
    global_state = torch.get_rng_state()
    first = materialize(lambda: MLPAutoencoder(6, (4,), 2, "relu"),
                        torch.Generator().manual_seed(0), "cpu")
    second = materialize(lambda: MLPAutoencoder(6, (4,), 2, "relu"),
                         torch.Generator().manual_seed(0), "cpu")
    third = materialize(lambda: MLPAutoencoder(6, (4,), 2, "relu"),
                        torch.Generator().manual_seed(1), "cpu")
    assert torch.equal(torch.get_rng_state(), global_state)
    for a, b, c in zip(first.parameters(), second.parameters(), third.parameters()):
        assert torch.equal(a, b)
        if a.ndim > 1:  # biases start at zero
            assert not torch.equal(a, c)


def test_dense_layers_start_with_the_gain_of_the_activation_they_feed():
    net = initialize_parameters(MLPAutoencoder(400, (300, 200), 100, "relu", batch_norm=True),
                                torch.Generator().manual_seed(0))
    linear = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    for layer in linear:
        std = float(layer.weight.detach().std()) * math.sqrt(layer.in_features)
        code_or_output = layer.out_features in (100, 400)
        assert std == pytest.approx(1.0 if code_or_output else math.sqrt(2.0), rel=0.02)
        assert not layer.bias.detach().any()
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 4 and all(bool((m.weight == 1).all()) for m in norms)


def test_other_dense_layers_follow_torch_default_bounds():
    layer = initialize_parameters(torch.nn.Linear(100, 50), torch.Generator().manual_seed(0))
    layer.requires_grad_(False)
    bound = 1 / math.sqrt(100)  # kaiming_uniform(a=sqrt(5)) and the bias bound coincide
    assert float(layer.weight.abs().max()) <= bound
    assert float(layer.weight.abs().max()) > 0.9 * bound
    assert float(layer.bias.abs().max()) <= bound
    assert float(layer.bias.abs().max()) > 0.9 * bound


class _Stack(torch.nn.Module):
    variance_preserving_init = True

    def __init__(self):
        super().__init__()
        self.net = mlp([256] * 9, "relu")

    def forward(self, X):
        return self.net(X)


def test_a_deep_relu_stack_keeps_the_scale_of_its_signal():
    # torch's default (variance 1 / (3 fan_in)) loses about a third of the
    # signal's second moment in every ReLU layer; He's initialisation keeps it.
    X = torch.randn(2000, 256, generator=torch.Generator().manual_seed(1))
    ratios = []
    for net in (_Stack(), _Stack().net):  # the second keeps torch's default
        initialize_parameters(net, torch.Generator().manual_seed(0))
        with torch.no_grad():
            ratios.append(float(net(X).square().mean()) / float(X.square().mean()))
    assert 0.5 < ratios[0] < 2.0
    assert ratios[1] < 0.05


def test_unknown_parameterised_module_is_refused():
    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.factor = torch.nn.Parameter(torch.ones(1))

    with pytest.raises(TypeError, match="does not know how to initialise Scale"):
        initialize_parameters(torch.nn.Sequential(Scale()), torch.Generator())


def test_encoder_classifier_standardises_codes_and_freezes_the_encoder():
    encoder = torch.nn.Linear(4, 3)
    net = EncoderClassifier(encoder, 3, 5, freeze_encoder=True)
    net.set_code_statistics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 0.0, 4.0]))
    X = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    expected = (encoder(X) - torch.tensor([1.0, 2.0, 3.0])) / torch.tensor([2.0, 1.0, 4.0])
    assert_allclose(net.encode(X).detach(), expected.detach(), rtol=1e-6)
    assert net(X).shape == (6, 5)
    assert not any(p.requires_grad for p in net.encoder.parameters())
    net.train()
    assert not net.encoder.training and net.head.training


def test_encoder_classifier_reads_a_tuple_encoder_through_its_first_element():
    net = EncoderClassifier(GaussianEncoder(4, (), 2, "relu"), 2, 3)
    assert net.codes(torch.zeros(5, 4)).shape == (5, 2)


def test_corrupt_leaves_input_alone_without_noise():
    X = torch.ones(3, 2)
    assert corrupt(X, None, 0.5, None) is X
    assert corrupt(X, "gaussian", 0, None) is X
    with pytest.raises(ValueError, match="noise must be"):
        corrupt(X, "salt", 0.1, torch.Generator())
