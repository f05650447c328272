"""A model file never runs code: skae.persistence and ``skae --model`` trust exact types only.

skops builds a file's objects by calling what the file names; a crafted file
whose node names a function (rather than a class) has that function called
with arguments of the file's choosing. These tests craft such files from a
real saved model, each naming a function of scikit-learn, of skae and of
NumPy that would leave a marker file behind, and check that loading refuses
them before anything runs.
"""

import importlib
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

import skae
from skae import persistence

skops_io = pytest.importorskip("skops.io")
from skops.io.exceptions import UntrustedTypesFoundException  # noqa: E402

ESTIMATORS = [skae.AutoencoderTransformer, skae.DenoisingAutoencoder,
              skae.VariationalAutoencoder, skae.ConvolutionalAutoencoder]


def wine_frame():
    frame = load_wine(as_frame=True).frame.drop(columns="target")
    frame.insert(0, "id", [f"w{i}" for i in range(len(frame))])
    return frame


def skae_subprocess(*args, cwd):
    """``python -m skae ARGS`` importing the skae under test."""
    root = str(Path(skae.__file__).parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "skae", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


# ---------------------------------------------------------------------- #
# Crafted files.

def _json(value):
    return {"__class__": type(value).__name__, "__module__": "builtins",
            "__loader__": "JsonNode", "content": json.dumps(value), "is_json": True}


def _value(value):
    if isinstance(value, list):
        return {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
                "content": [_value(item) for item in value]}
    return _json(value)


def craft(model_path, evil_path, module, function, args):
    """Copy a saved model, adding an attribute whose node calls ``module.function(*args)``.

    skops's ``ConstructorFromReduceNode`` builds ``getattr(module, name)(*content)``:
    meant for a class, it calls whatever the file names.
    """
    call = {"__class__": function, "__module__": module,
            "__loader__": "ConstructorFromReduceNode",
            "content": {"__class__": "tuple", "__module__": "builtins",
                        "__loader__": "TupleNode", "content": [_value(a) for a in args]}}
    with zipfile.ZipFile(model_path) as source, zipfile.ZipFile(evil_path, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "schema.json":
                schema = json.loads(data)
                attributes = schema["content"]  # the top object's attribute dict
                key_types = attributes["key_types"]["content"]
                key_types.insert(0, dict(key_types[0]))  # a str key, like the others
                attributes["content"] = {"evil": call, **attributes["content"]}
                data = json.dumps(schema).encode()
            target.writestr(name, data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A table and a model saved as ``skae reduce --save`` saves one."""
    folder = tmp_path_factory.mktemp("trust")
    frame = wine_frame()
    frame.to_csv(folder / "wine.csv", index=False)
    model = make_pipeline(StandardScaler(),
                          skae.AutoencoderTransformer(max_iter=2, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # two epochs
        model.fit(frame.drop(columns="id"))
    skops_io.dump(model, folder / "model.skops")
    return folder


def payloads(folder, marker):
    """``(module, function, args)`` that each leave ``marker`` behind when called."""
    return {
        # Runs a Python source string in a subprocess.
        "scikit-learn function": (
            "sklearn.utils._testing", "assert_run_python_script_without_output",
            [f"open({str(marker)!r}, 'w').write('ran')"]),
        # The command's own entry point: fits a model and writes a table.
        "skae function": (
            "skae._cli", "main",
            [["reduce", str(folder / "wine.csv"), "-o", str(marker), "--keep", "id",
              "--max-iter", "1", "--quiet"]]),
        "NumPy function": ("numpy", "savetxt", [str(marker), [1.0]]),
    }


CASES = ["scikit-learn function", "skae function", "NumPy function"]


@pytest.mark.parametrize("case", CASES)
def test_the_command_refuses_a_model_that_names_a_function(folder, tmp_path, case):
    marker = tmp_path / "marker.csv"
    module, function, args = payloads(folder, marker)[case]
    craft(folder / "model.skops", tmp_path / "evil.skops", module, function, args)
    result = skae_subprocess("transform", "--model", tmp_path / "evil.skops",
                             folder / "wine.csv", "-o", tmp_path / "out.csv", "--keep", "id",
                             cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skae: error: refusing"), result.stderr
    assert f"{module}.{function}" in lines[0]
    assert not marker.exists(), "the file's code ran"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["evil.skops"]


@pytest.mark.parametrize("case", CASES)
def test_persistence_load_refuses_a_model_that_names_a_function(folder, tmp_path, case):
    marker = tmp_path / "marker.csv"
    module, function, args = payloads(folder, marker)[case]
    craft(folder / "model.skops", tmp_path / "evil.skops", module, function, args)
    assert persistence.untrusted_types(tmp_path / "evil.skops") == [f"{module}.{function}"]
    with pytest.raises(UntrustedTypesFoundException, match=f"{module}.{function}"):
        persistence.load(tmp_path / "evil.skops")
    assert not marker.exists(), "the file's code ran"


def test_crafting_works_when_the_function_is_trusted(folder, tmp_path):
    """The crafted file does call its function when trusted (the hole exists)."""
    marker = tmp_path / "marker.txt"
    craft(folder / "model.skops", tmp_path / "evil.skops", "numpy", "savetxt",
          [str(marker), [1.0]])
    skops_io.load(tmp_path / "evil.skops",
                  trusted=skops_io.get_untrusted_types(file=tmp_path / "evil.skops"))
    assert marker.exists()


# ---------------------------------------------------------------------- #
# The list itself.

def test_trusted_types_are_exact_class_names():
    for name in persistence.TRUSTED_TYPES:
        module, _, attribute = name.rpartition(".")
        value = getattr(importlib.import_module(module), attribute)
        assert isinstance(value, type), f"{name} is not a class"
        assert f"{value.__module__}.{value.__qualname__}" == name


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("scaler", [StandardScaler, MinMaxScaler, None],
                         ids=["standard", "minmax", "none"])
def test_every_model_the_command_saves_loads_with_the_list(tmp_path, estimator, scaler):
    X = pd.DataFrame(StandardScaler().fit_transform(wine_frame().drop(columns="id")),
                     columns=wine_frame().columns[1:])
    model = estimator(max_iter=1, random_state=0)
    model = model if scaler is None else make_pipeline(scaler(), model)
    model.fit(X)
    skops_io.dump(model, tmp_path / "m.skops")
    assert persistence.untrusted_types(tmp_path / "m.skops") == []
    loaded = persistence.load(tmp_path / "m.skops")
    np.testing.assert_allclose(loaded.transform(X), model.transform(X), rtol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_classifier_loads_with_the_list(tmp_path):
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = skae.AutoencoderClassifier(max_iter=1, random_state=0)
    model.fit(X, y)
    skops_io.dump(model, tmp_path / "m.skops")
    np.testing.assert_array_equal(persistence.load(tmp_path / "m.skops").predict(X),
                                  model.predict(X))


def test_a_foreign_type_is_refused_by_load(tmp_path):
    import collections

    skops_io.dump(collections.Counter(a=1), tmp_path / "m.skops")
    with pytest.raises(UntrustedTypesFoundException, match="collections.Counter"):
        persistence.load(tmp_path / "m.skops")
