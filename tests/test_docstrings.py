"""Parameter documentation that cannot drift.

Every estimator keeps an explicit ``__init__`` (scikit-learn needs it) and its
own numpydoc docstring, in which the entries shared by several estimators are
placeholders filled from ``skae._docstrings`` at class creation; this checks
the filled text: no placeholder left, every shared entry as written once,
every parameter documented with its real default.
"""

import ast
import inspect
import pydoc

import pytest
from numpydoc.docscrape import ClassDoc

from skae import AutoencoderClassifier, AutoencoderTransformer
from skae._docstrings import SHARED_ENTRIES, fill_shared_entries
from skae._modules import ACTIVATIONS
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
    ("RecurrentAutoencoder", "init"): "PCA through the linear paths beside the recurrent ones",
    ("SparseAutoencoder", "hidden_layer_sizes"): "() is the textbook sparse autoencoder",
    ("SparseAutoencoder", "activation"): "the code units are sigmoid",
    ("SparseAutoencoder", "early_stopping"): "scores the loss with its sparsity penalty",
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


def _exempt(Estimator, name):
    return (Estimator is AutoencoderClassifier and name in CLASSIFIER_OWN
            or (Estimator.__name__, name) in DIFFERENT_BY_DESIGN)


@pytest.mark.parametrize("Estimator", ESTIMATORS, ids=lambda E: E.__name__)
def test_no_placeholder_is_left(Estimator):
    for line in Estimator.__doc__.splitlines():
        text = line.strip()
        assert not (text.startswith("{") and text.endswith("}") and text[1:-1].isidentifier()), text
    assert "{activation_options}" not in Estimator.__doc__


@pytest.mark.parametrize("Estimator", ESTIMATORS, ids=lambda E: E.__name__)
def test_shared_entries_are_the_ones_written_once(Estimator):
    for name, entry in _entries(Estimator).items():
        if name in SHARED_ENTRIES and not _exempt(Estimator, name):
            type_, description = SHARED_ENTRIES[name]
            assert _without_default(entry) == (type_, inspect.cleandoc(description)), name


def test_every_shared_entry_is_shared():
    users = {name: [E.__name__ for E in ESTIMATORS
                    if name in _entries(E) and not _exempt(E, name)] for name in SHARED_ENTRIES}
    assert all(len(owners) >= 2 for owners in users.values()), users


@pytest.mark.parametrize("Estimator", [E for E in AUTOENCODERS  # the recurrent has none
                                       if "activation" in E._get_param_names()],
                         ids=lambda E: E.__name__)
def test_activation_options_are_the_activations_table(Estimator):
    type_, _ = _without_default(_entries(Estimator)["activation"])
    options = "{" + ", ".join(f'"{name}"' for name in ACTIVATIONS) + "}"
    if Estimator().activation == "auto":
        options += ' or "auto"'
    assert type_ == options


def test_parameter_docs_quote_no_benchmark():
    for Estimator in ESTIMATORS:
        for name, (_, description) in _entries(Estimator).items():
            assert "2-core" not in description and "slower" not in description, (
                Estimator.__name__, name)


def test_help_shows_the_filled_entries():
    text = pydoc.render_doc(AutoencoderTransformer, renderer=pydoc.plaintext)
    assert "n_threads : int or None, default=1" in text
    assert "{n_threads}" not in text


def test_fill_shared_entries_uses_the_signature_default_and_indentation():
    @fill_shared_entries
    class Toy:
        """Toy.

        Parameters
        ----------
        {max_iter}
        """

        def __init__(self, max_iter=7):
            self.max_iter = max_iter

    _, description = SHARED_ENTRIES["max_iter"]
    assert Toy.__doc__.splitlines()[4:6] == [
        "        max_iter : int, default=7",
        "            " + inspect.cleandoc(description)]


def test_fill_shared_entries_refuses_unknown_or_absent_parameters():
    class Misspelt:
        """{max_iters}"""

        def __init__(self, max_iter=7):
            pass

    with pytest.raises(KeyError, match="max_iters"):
        fill_shared_entries(Misspelt)

    class Absent:
        """{tol}"""

        def __init__(self, max_iter=7):
            pass

    with pytest.raises(ValueError, match="tol.*no parameter"):
        fill_shared_entries(Absent)
