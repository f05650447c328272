"""Parameter documentation that cannot drift.

Every estimator keeps an explicit ``__init__`` (scikit-learn needs it) and its
own numpydoc docstring; this checks that the entries for a parameter shared
by several estimators say the same thing everywhere, and that every
parameter is documented with its real default.
"""

import ast
import inspect

import pytest
from numpydoc.docscrape import ClassDoc

from skae import AutoencoderClassifier
from skae.utils import all_estimators

ESTIMATORS = [Estimator for _, Estimator in all_estimators()]
AUTOENCODERS = [E for E in ESTIMATORS if E is not AutoencoderClassifier]

# The classifier's training parameters govern its second phase (the head),
# and some have other defaults there: its own entries say so.
CLASSIFIER_OWN = {"alpha", "batch_size", "learning_rate_init", "max_iter", "tol",
                  "n_iter_no_change", "early_stopping", "validation_fraction", "random_state",
                  "verbose", "callbacks", "device", "n_threads"}


# Entries that differ on purpose, because the parameter means more there.
DIFFERENT_BY_DESIGN = {
    ("ConvolutionalAutoencoder", "hidden_layer_sizes"): "dense layers after the convolutions",
    ("ConvolutionalAutoencoder", "activation"): "also follows every convolution",
    ("ConvolutionalAutoencoder", "noise"): "None (no noise) is its default",
    ("ConvolutionalAutoencoder", "noise_level"): "unused when noise is None",
    ("DenoisingAutoencoder", "early_stopping"): "scores the denoising error",
    ("ConvolutionalAutoencoder", "early_stopping"): "scores the denoising error with noise",
    ("VariationalAutoencoder", "hidden_layer_sizes"): "() is a linear VAE",
    ("VariationalAutoencoder", "activation"): "the posterior heads are linear",
}


def _entries(Estimator):
    return {p.name: (p.type, "\n".join(p.desc)) for p in ClassDoc(Estimator)["Parameters"]}


def _without_default(entry):
    """Estimators may differ in a default (tested against the signature above),
    not in what they say of the parameter."""
    type_, description = entry
    return type_.rpartition(", default=")[0], description


@pytest.mark.parametrize("Estimator", ESTIMATORS, ids=lambda E: E.__name__)
def test_every_parameter_is_documented_with_its_default(Estimator):
    entries = _entries(Estimator)
    signature = inspect.signature(Estimator.__init__).parameters
    assert list(entries) == [name for name in signature if name != "self"]
    for name, (type_, _) in entries.items():
        shown = type_.rpartition("default=")[2]
        assert ast.literal_eval(shown) == signature[name].default, (Estimator.__name__, name)


def test_shared_parameter_entries_are_identical():
    by_name = {}
    for Estimator in ESTIMATORS:
        for name, entry in _entries(Estimator).items():
            if (Estimator is AutoencoderClassifier and name in CLASSIFIER_OWN
                    or (Estimator.__name__, name) in DIFFERENT_BY_DESIGN):
                continue
            by_name.setdefault(name, {})[Estimator.__name__] = _without_default(entry)
    drifted = {name: owners for name, owners in by_name.items()
               if len(set(owners.values())) > 1}
    assert not drifted, f"entries that differ between estimators: {sorted(drifted)}"
    shared_by_all_autoencoders = [name for name, owners in by_name.items()
                                  if len(owners) >= len(AUTOENCODERS)]
    assert len(shared_by_all_autoencoders) >= 15
