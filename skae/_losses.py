"""Reconstruction likelihoods: output link, training loss, per-row loss and score.

A :class:`Likelihood` says how a network's raw output ``z`` (its natural
parameter) reconstructs a row: the link that turns ``z`` into a value on the
data's scale (:meth:`Likelihood.link`), the loss training minimises
(:meth:`Likelihood.training_loss`, a mean over rows and features), the per-row
loss that ``score_samples`` negates (:meth:`Likelihood.per_row_loss`, a mean
over the row's features), and the per-row negative log-likelihood a
variational autoencoder's reconstruction term sums over features
(:meth:`Likelihood.negative_log_likelihood`). Names follow scikit-learn's
``loss`` options. Used by the networks' heads, the training losses and
``score_samples`` alike; no scikit-learn imports.
"""

import math

import numpy as np
import torch
from torch.nn import functional as F

_LOG_2PI = math.log(2 * math.pi)


class Likelihood:
    """One reconstruction likelihood (see the module's docstring).

    Attributes
    ----------
    name : str
        The ``loss`` option that selects it.
    penalty_factor : float
        The training loss, times the number of features, over scikit-learn's
        per-row loss (summed over the features: half the squared error, the
        binary log loss, half the Poisson deviance): what scales ``alpha``
        to the training loss (see :mod:`skae._optim`).
    """

    name = None
    penalty_factor = 1.0

    def link(self, z):
        """The reconstruction on the data's scale from the raw output ``z``."""
        raise NotImplementedError

    def training_loss(self, z, X):
        """The mean over rows and features of the per-value loss (a scalar)."""
        raise NotImplementedError

    def per_row_loss(self, z, X):
        """The mean over each row's features of the per-value loss (zero for a
        perfect fit where the likelihood allows one)."""
        raise NotImplementedError

    def negative_log_likelihood(self, z, X):
        """Per row, ``-log p(X | z)`` summed over the features, in nats."""
        raise NotImplementedError

    def check(self, X):
        """A ValueError naming ``loss`` when the values of ``X`` (an array or
        CSR matrix; NumPy) are outside this likelihood's support."""


class SquaredError(Likelihood):
    """A Gaussian of unit variance: identity link, mean squared error."""

    name = "squared_error"
    penalty_factor = 2.0  # the squared error, not half of it

    def link(self, z):
        return z

    def training_loss(self, z, X):
        return F.mse_loss(z, X)

    def per_row_loss(self, z, X):
        return (z - X).square().flatten(1).mean(dim=1)

    def negative_log_likelihood(self, z, X):
        squared_error = (z - X).square().flatten(1).sum(dim=1)
        return 0.5 * (squared_error + X[0].numel() * _LOG_2PI)


class LogLoss(Likelihood):
    """A Bernoulli per value in [0, 1]: sigmoid link, binary cross-entropy."""

    name = "log_loss"

    def link(self, z):
        return torch.sigmoid(z)

    def training_loss(self, z, X):
        return F.binary_cross_entropy_with_logits(z, X)

    def per_row_loss(self, z, X):
        return F.binary_cross_entropy_with_logits(z, X, reduction="none").flatten(1).mean(dim=1)

    def negative_log_likelihood(self, z, X):
        return F.binary_cross_entropy_with_logits(z, X, reduction="none").flatten(1).sum(dim=1)

    def check(self, X):
        low, high = _extremes(X)
        if low < 0 or high > 1:
            raise ValueError(
                f"loss='log_loss' models values in [0, 1] (a Bernoulli likelihood), but X "
                f"ranges over [{low:.4g}, {high:.4g}]. Scale it into [0, 1] (e.g. with "
                "MinMaxScaler, or divide pixel values by their maximum), or use "
                "loss='squared_error'.")


class Poisson(Likelihood):
    """A Poisson per value (counts, >= 0): exponential link, Poisson deviance."""

    name = "poisson"

    def link(self, z):
        return torch.exp(z)

    def training_loss(self, z, X):
        # exp(z) - X z: half the deviance less a term free of z.
        return F.poisson_nll_loss(z, X, log_input=True, full=False)

    def per_row_loss(self, z, X):
        # The Poisson deviance 2 (X log(X / mu) - X + mu), mu = exp(z).
        deviance = 2 * (torch.xlogy(X, X) - X * z - X + torch.exp(z))
        return deviance.flatten(1).mean(dim=1)

    def negative_log_likelihood(self, z, X):
        values = torch.exp(z) - X * z + torch.lgamma(X + 1)
        return values.flatten(1).sum(dim=1)

    def check(self, X):
        low, _ = _extremes(X)
        if low < 0:
            raise ValueError(
                f"loss='poisson' models non-negative counts, but X has values down to "
                f"{low:.4g}. Pass counts (or rates) >= 0, or use loss='squared_error'.")


def _extremes(X):
    """The smallest and largest value of an array or CSR matrix (its implicit
    zeros included)."""
    values = getattr(X, "data", X) if hasattr(X, "indptr") else X
    values = np.asarray(values)
    if values.size == 0:
        return 0.0, 0.0
    low, high = float(values.min()), float(values.max())
    if hasattr(X, "indptr") and values.size < X.shape[0] * X.shape[1]:
        low, high = min(low, 0.0), max(high, 0.0)
    return low, high


LIKELIHOODS = {likelihood.name: likelihood for likelihood in (SquaredError(), LogLoss(),
                                                               Poisson())}
