"""A Gaussian density around an autoencoder: the log-likelihood its ``score`` reports.

Probabilistic PCA (Tipping and Bishop, 1999), the model behind
:meth:`sklearn.decomposition.PCA.score`, wrapped around any autoencoder with a
squared-error loss: a row is its reconstruction on the decoder's surface plus
isotropic Gaussian noise in the directions the surface does not span,

    log p(x) = log N(u; 0, S) - 1/2 [(d - k) log(2 pi sigma^2) + ||x - g(z)||^2 / sigma^2],

with ``z`` the row's code, ``g`` the decoder, ``k`` the code's width and ``d``
the row's. ``u`` is the code's offset from the training codes' mean in
orthonormal coordinates of the surface at ``g(z)`` (``J = dg/dz``, ``J^T J =
R^T R``, ``u = R (z - mean)``): the change of variables from the code to the
surface, so that the score does not depend on how the code is scaled or
rotated. ``S`` is the training codes' covariance in the same coordinates,
floored at ``sigma^2`` (the noise is isotropic, so no direction varies less
than it: a code dimension the decoder ignores at that row then costs what a
noise dimension costs, instead of an infinite density on a thinner surface).
``sigma^2`` is the training rows' squared residual per dimension the code
leaves out, ``sum ||x - g(z)||^2 / ((n - 1)(d - k))``, and
the covariance divides by ``n - 1``: for a linear autoencoder that spans
PCA's subspace this is exactly ``PCA.score``. A code too small leaves signal
in the residual (a large ``sigma^2``); a code too large models noise as
signal, which held-out rows do not repeat: the cross-validated maximum is the
number of directions that rise above the noise.

Statistics are pooled with Chan's update, so ``partial_fit`` accumulates them
over its blocks (each measured with the network as that call left it).
"""

import math

import numpy as np
import torch

_LOG_2PI = math.log(2 * math.pi)


def code_statistics(encode, decoder, X):
    """Per row: the code, the squared residual and the squared norm (a tensor of
    shape ``(n, k + 2)``), from which :func:`pool` estimates the density."""
    codes = encode(X).flatten(1)
    residual = (X - decoder(codes).reshape(X.shape)).flatten(1)
    return torch.cat([codes, residual.square().sum(dim=1, keepdim=True),
                      X.flatten(1).square().sum(dim=1, keepdim=True)], dim=1)


def pool(statistics, n_features, previous=None):
    """The density's sufficient statistics from :func:`code_statistics`' rows
    (NumPy), pooled with ``previous`` (an earlier call's result) when given."""
    statistics = np.asarray(statistics, dtype=np.float64)
    codes = statistics[:, :-2]
    n = codes.shape[0]
    mean = codes.mean(axis=0)
    centred = codes - mean
    new = {"n_samples": n, "mean": mean, "scatter": centred.T @ centred,
           "residual": float(statistics[:, -2].sum()), "energy": float(statistics[:, -1].sum()),
           "n_features": int(n_features)}
    if previous is None:
        return new
    total = previous["n_samples"] + n
    delta = mean - previous["mean"]
    return {"n_samples": total,
            "mean": previous["mean"] + delta * n / total,
            "scatter": (previous["scatter"] + new["scatter"]
                        + np.outer(delta, delta) * previous["n_samples"] * n / total),
            "residual": previous["residual"] + new["residual"],
            "energy": previous["energy"] + new["energy"],
            "n_features": int(n_features)}


def parameters(pooled):
    """``(mean, covariance, noise_variance)`` of the density from :func:`pool`'s
    statistics."""
    n, k = pooled["n_samples"], pooled["mean"].shape[0]
    dof = max(n - 1, 1)
    covariance = pooled["scatter"] / dof
    n_noise = max(pooled["n_features"] - k, 1)
    noise_variance = pooled["residual"] / (dof * n_noise)
    # A perfect reconstruction (constant data, a code as wide as the rows)
    # leaves no noise to estimate: a floor far below the data's scale keeps
    # the score finite.
    floor = 1e-12 * pooled["energy"] / max(n * pooled["n_features"], 1) + 1e-30
    return pooled["mean"], covariance, max(noise_variance, floor)


def decoder_jacobian(decoder, codes):
    """``dg/dz`` at each row's code, of shape ``(n, d, k)`` (``d``: the decoder's
    output flattened): one product ``J e_j`` per code dimension, by
    differentiating ``v -> v^T J`` (reverse mode twice). torch's forward mode
    would do it in one pass, but its first use imports decompositions that
    warn of ``torch.jit.script``'s deprecation."""
    # Autograd is off in inference mode.
    with torch.inference_mode(False), torch.enable_grad():
        codes = codes.clone().requires_grad_(True)
        output = decoder(codes).flatten(1)
        cotangent = torch.zeros_like(output, requires_grad=True)
        pulled, = torch.autograd.grad(output, codes, cotangent, create_graph=True)
        columns = []
        for j in range(codes.shape[1]):
            direction = torch.zeros_like(codes)
            direction[:, j] = 1
            column, = torch.autograd.grad(pulled, cotangent, direction, retain_graph=True)
            columns.append(column.detach())
    return torch.stack(columns, dim=2)


def log_likelihood(encode, decoder, X, mean, covariance, noise_variance):
    """Per row, ``log p(x)`` under the density of the module's docstring (a
    float64 tensor of shape ``(n,)``).

    With ``A = R C^(1/2)`` (``R^T R = J^T J``) and the whitened offset ``y =
    C^(-1/2) (z - mean)``: ``u = A y``, ``S = A A^T``, whose eigenvalues and
    directions come from ``A^T A = C^(1/2) J^T J C^(1/2)``, one symmetric
    ``k x k`` eigendecomposition a row.
    """
    codes = encode(X).flatten(1)
    residual = (X - decoder(codes).reshape(X.shape)).flatten(1).double()
    jacobian = decoder_jacobian(decoder, codes).double()
    n_features, k = jacobian.shape[1], jacobian.shape[2]
    # C^(1/2) and its pseudo-inverse: a code dimension constant on the
    # training rows has no spread to whiten (its offset is about zero).
    values, vectors = np.linalg.eigh(np.asarray(covariance, dtype=np.float64))
    values = np.clip(values, 0, None)
    kept = values > 1e-12 * max(values.max(initial=0.0), 1e-300)
    root = (vectors * np.sqrt(values)) @ vectors.T
    inverse_root = (vectors[:, kept] / np.sqrt(values[kept])) @ vectors[:, kept].T
    device = codes.device
    root = torch.as_tensor(root, dtype=torch.float64, device=device)
    inverse_root = torch.as_tensor(inverse_root, dtype=torch.float64, device=device)
    offsets = codes.double() - torch.as_tensor(mean, dtype=torch.float64, device=device)
    whitened = offsets @ inverse_root  # C^(-1/2) is symmetric
    stretched = jacobian @ root  # J C^(1/2): (A^T A) = (J C^(1/2))^T (J C^(1/2))
    spread_values, spread_vectors = torch.linalg.eigh(stretched.transpose(1, 2) @ stretched)
    spread_values = spread_values.clamp(min=0)
    floored = spread_values.clamp(min=noise_variance)
    along = (spread_vectors.transpose(1, 2) @ whitened.unsqueeze(2)).squeeze(2)
    on_surface = -0.5 * (k * _LOG_2PI + floored.log().sum(dim=1)
                         + (spread_values * along.square() / floored).sum(dim=1))
    n_noise = max(n_features - k, 0)
    off_surface = -0.5 * (n_noise * math.log(2 * math.pi * noise_variance)
                          + residual.square().sum(dim=1) / noise_variance)
    return on_surface + off_surface
