"""Guarantees that must hold on any machine: failed calls change nothing,
pickles hold no torch objects, threads and Ctrl-C are handled, skops loads
without trusting anything outside skae."""

import io
import os
import pickle
import signal
import subprocess
import sys
import threading
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skae
from skae import (
    AutoencoderClassifier,
    AutoencoderTransformer,
    ConvolutionalAutoencoder,
    DenoisingAutoencoder,
    TrainingDivergedError,
    VariationalAutoencoder,
)
from skae._base import NetworkEstimator

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

AUTOENCODERS = [AutoencoderTransformer, DenoisingAutoencoder, VariationalAutoencoder,
                ConvolutionalAutoencoder]


def _fast(Estimator, **params):
    return Estimator(**{"max_iter": 4, "random_state": 0, "device": "cpu", **params})


def _fitted(Estimator, X, y):
    if Estimator is AutoencoderClassifier:
        return _fast(Estimator, autoencoder=AutoencoderTransformer(
            n_components=4, hidden_layer_sizes=(8,), max_iter=3, random_state=0)).fit(X, y)
    return _fast(Estimator, n_components=3).fit(X)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(80, 16))
    y = (X[:, 0] > 0).astype(int)
    return X, y


def _snapshot(estimator):
    """Everything a fitted estimator is: its attributes and its weights."""
    return pickle.dumps(estimator), sorted(vars(estimator))


# --------------------------------------------------------------------------- #
# A failed call leaves the estimator as it was.

def test_failed_refit_on_other_columns_leaves_the_model_whole(data):
    """Reproduced in the issue: fit on 5 columns, then a diverging fit on 3
    left n_features_in_ == 3 beside a 5-input network."""
    X, _ = data
    ae = AutoencoderTransformer(n_components=2, max_iter=3, random_state=0).fit(X[:, :5])
    codes = ae.transform(X[:, :5])
    with pytest.raises(TrainingDivergedError):
        ae.set_params(learning_rate_init=1e30).fit(X[:, :3] * 1e30)
    assert ae.n_features_in_ == 5
    assert_array_equal(ae.transform(X[:, :5]), codes)


class _Fault(Exception):
    pass


def _faulty_loss(estimator, after_calls, exception):
    calls = []
    real = estimator._training_loss

    def loss(*args):
        calls.append(1)
        if len(calls) > after_calls:
            raise exception
        return real(*args)

    return loss


@pytest.mark.parametrize("exception", [_Fault("injected"), KeyboardInterrupt(),
                                       MemoryError(), RuntimeError("CUDA out of memory")])
@pytest.mark.parametrize("mode", ["fit", "warm_start", "partial_fit", "classifier"])
def test_any_exception_in_any_mode_restores_the_prior_state(data, mode, exception):
    X, y = data
    Estimator = AutoencoderClassifier if mode == "classifier" else AutoencoderTransformer
    estimator = _fitted(Estimator, X, y)
    estimator.set_params(batch_size=16, warm_start=mode == "warm_start") \
        if mode != "classifier" else estimator.set_params(batch_size=16)
    before = _snapshot(estimator)
    output = (estimator.predict_proba(X) if mode == "classifier" else estimator.transform(X))
    estimator._training_loss = _faulty_loss(estimator, 2, exception)
    call = {"fit": lambda: estimator.fit(X[:, :7]),  # other columns, as in the issue
            "warm_start": lambda: estimator.fit(X),
            "partial_fit": lambda: estimator.partial_fit(X),
            "classifier": lambda: estimator.fit(X, y)}[mode]
    with pytest.raises(type(exception)):
        call()
    del estimator._training_loss
    assert _snapshot(estimator) == before
    again = (estimator.predict_proba(X) if mode == "classifier" else estimator.transform(X))
    assert_array_equal(again, output)


def test_failure_of_a_first_fit_leaves_an_unfitted_estimator(data):
    X, _ = data
    ae = _fast(AutoencoderTransformer)
    ae._training_loss = _faulty_loss(ae, 1, _Fault())
    with pytest.raises(_Fault):
        ae.fit(X)
    assert [name for name in vars(ae) if name.endswith("_")] == []
    assert not ae.__sklearn_is_fitted__()


def test_divergence_is_a_public_value_error_that_says_what_to_do(data):
    X, _ = data
    assert issubclass(TrainingDivergedError, ValueError)
    with pytest.raises(TrainingDivergedError,
                       match=r"not finite.*Scale the input .* lower learning_rate_init"):
        AutoencoderTransformer(max_iter=3).fit(X * 1e30)


# --------------------------------------------------------------------------- #
# Pickles.

class _NoTorchUnpickler(pickle.Unpickler):
    """Refuses every torch class: what loads with it holds no torch object."""

    def find_class(self, module, name):
        if module.split(".")[0] == "torch":
            raise pickle.UnpicklingError(f"the pickle holds {module}.{name}")
        return super().find_class(module, name)


def _walk(value, path="state"):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")
    elif isinstance(value, NetworkEstimator):  # e.g. the classifier's autoencoder_
        yield from _walk(value.__getstate__(), path)
    else:
        yield path, value


@pytest.mark.parametrize("Estimator", [*AUTOENCODERS, AutoencoderClassifier],
                         ids=lambda E: E.__name__)
def test_pickled_state_holds_numpy_and_plain_values_only(data, Estimator):
    """No tensor, device or module is pickled, so a model fitted on a GPU
    unpickles on a machine without one (see benchmarks/check_gpu.py for the
    run on a real GPU)."""
    X, y = data
    estimator = _fitted(Estimator, X, y)
    for path, value in _walk(estimator.__getstate__()):
        assert isinstance(value, (np.ndarray, np.generic, str, int, float, bool, type(None))), \
            (path, type(value))
    restored = _NoTorchUnpickler(io.BytesIO(pickle.dumps(estimator))).load()
    method = "predict_proba" if Estimator is AutoencoderClassifier else "transform"
    assert_array_equal(getattr(restored, method)(X), getattr(estimator, method)(X))


def test_a_model_saved_in_another_state_format_is_refused_clearly(data):
    # More layouts (older, unnumbered, skops) in test_persistence.py.
    X, y = data
    state = {**_fitted(AutoencoderTransformer, X, y).__getstate__(), "_skae_layout": 99}
    restored = AutoencoderTransformer.__new__(AutoencoderTransformer)
    with pytest.raises(ValueError, match="layout 99 .*reads layout 2 .*refit"):
        restored.__setstate__(state)


def test_skops_round_trip_trusts_only_skae_classes(data, tmp_path):
    sio = pytest.importorskip("skops.io")
    X, y = data
    models = [_fitted(Estimator, X, y) for Estimator in [*AUTOENCODERS, AutoencoderClassifier]]
    models.append(make_pipeline(StandardScaler(), _fast(AutoencoderTransformer, n_components=3))
                  .fit(X))
    for model in models:
        path = tmp_path / "model.skops"
        sio.dump(model, path)
        untrusted = sio.get_untrusted_types(file=path)
        assert untrusted and all(name.startswith("skae.") for name in untrusted), untrusted
        loaded = sio.load(path, trusted=untrusted)
        method = "predict_proba" if hasattr(model, "predict_proba") else "transform"
        assert_array_equal(getattr(loaded, method)(X), getattr(model, method)(X))


# --------------------------------------------------------------------------- #
# Threads.

@pytest.mark.parametrize("Estimator", [AutoencoderTransformer, AutoencoderClassifier],
                         ids=lambda E: E.__name__)
def test_inference_from_four_threads_equals_serial(data, Estimator):
    X, y = data
    estimator = _fitted(Estimator, X, y)
    methods = (["predict_proba", "predict"] if Estimator is AutoencoderClassifier
               else ["transform", "score_samples", "inverse_transform"])
    inputs = {"inverse_transform": estimator.transform(X) if hasattr(estimator, "transform")
              else None}
    expected = {m: getattr(estimator, m)(inputs.get(m, X) if inputs.get(m) is not None else X)
                for m in methods}
    def work(dtype, barrier, results, errors):
        try:
            barrier.wait(10)
            for _ in range(5):
                for m in methods:
                    source = inputs.get(m) if inputs.get(m) is not None else X
                    results.append((m, getattr(estimator, m)(source.astype(dtype))))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    for dtype in (np.float64, np.float32):
        results, errors = [], []
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=work, args=(dtype, barrier, results, errors))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        assert len(results) == 4 * 5 * len(methods)
        for m, result in results:
            assert_allclose(result, expected[m], rtol=1e-5 if dtype == np.float32 else 1e-12,
                            atol=1e-6 if dtype == np.float32 else 1e-12)


# --------------------------------------------------------------------------- #
# Ctrl-C.

def _sigint_at_epoch(epoch):
    def callback(record):
        if record.epoch == epoch:
            os.kill(os.getpid(), signal.SIGINT)
    return callback


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_process_that_ignores_ctrl_c_keeps_ignoring_it(data):
    # Started in the background (nohup, "cmd &"), a process inherits SIGINT
    # ignored: training leaves that alone and runs to its end.
    X, _ = data
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ae = AutoencoderTransformer(n_components=3, max_iter=6, tol=0, random_state=0,
                                    callbacks=[_sigint_at_epoch(3)])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ae.fit(X)
        assert not [w for w in caught if "interrupted" in str(w.message)]
        assert ae.n_iter_ == 6
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_after_the_batch_and_keeps_a_usable_model(data):
    X, _ = data
    ae = AutoencoderTransformer(n_components=3, max_iter=50, tol=0, random_state=0,
                                callbacks=[_sigint_at_epoch(3)])
    with pytest.warns(UserWarning, match=r"interrupted \(KeyboardInterrupt\) after 3 epochs"):
        ae.fit(X)
    assert ae.n_iter_ == 3 and len(ae.loss_curve_) == 3
    assert np.isfinite(ae.transform(X)).all()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_with_early_stopping_restores_the_best_epoch(data):
    X, _ = data
    scores = []
    # A random start, which the first epochs beat (a PCA start may not be).
    ae = AutoencoderTransformer(n_components=3, max_iter=50, tol=0, early_stopping=True,
                                init="random", random_state=0,
                                callbacks=[lambda r: scores.append(r.validation_score),
                                           _sigint_at_epoch(4)])
    with pytest.warns(UserWarning, match="kept the weights of epoch"):
        ae.fit(X)
    assert ae.best_validation_score_ == max(scores)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_the_first_epoch_reraises_and_changes_nothing(data):
    X, _ = data
    ae = _fast(AutoencoderTransformer, n_components=3, batch_size=8).fit(X)
    before = _snapshot(ae)
    real = ae._training_loss
    calls = []

    def loss(*args):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    ae._training_loss = loss
    with pytest.raises(KeyboardInterrupt):
        ae.fit(X)
    del ae._training_loss
    assert len(calls) == 2  # stopped at the end of the batch that saw Ctrl-C
    assert _snapshot(ae) == before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_real_sigint_to_a_training_process(tmp_path):
    """A user pressing Ctrl-C in a terminal: the script goes on with the model."""
    script = tmp_path / "train.py"
    script.write_text(
        "import sys, warnings, numpy as np\n"
        "from skae import AutoencoderTransformer\n"
        "X = np.random.RandomState(0).normal(size=(4000, 50))\n"
        "def started(record):\n"
        "    if record.epoch == 2: print('training', flush=True)\n"
        "ae = AutoencoderTransformer(max_iter=100000, tol=0, callbacks=[started])\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    ae.fit(X)\n"
        "print('fitted', ae.n_iter_, any('interrupted' in str(w.message) for w in caught))\n"
        "print(ae.transform(X[:2]).shape)\n")
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "training"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    fitted, n_iter, warned = out.split("\n")[0].split()
    assert fitted == "fitted" and int(n_iter) >= 2 and warned == "True"
    assert "(2, 2)" in out


# --------------------------------------------------------------------------- #
# Messages a user can act on.

def test_a_string_column_is_named_with_a_remedy():
    frame = pd.DataFrame({"size": [1.0, 2.0, 3.0], "colour": ["red", "blue", "red"]})
    with pytest.raises(ValueError, match=r"non-numeric columns \['colour'\].*OneHotEncoder"):
        AutoencoderTransformer().fit(frame)
    with pytest.raises(ValueError, match="could not convert.*OneHotEncoder"):
        AutoencoderTransformer().fit(np.array([["1", "x"], ["2", "y"]], dtype=object))


def test_an_overcomplete_plain_code_warns_and_noisy_ones_do_not(data):
    X, _ = data
    with pytest.warns(UserWarning, match="n_components=16 is not smaller than the 16 input "
                                         "features.*DenoisingAutoencoder"):
        _fast(AutoencoderTransformer, n_components=16).fit(X)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*input features")
        _fast(DenoisingAutoencoder, n_components=16).fit(X)
        _fast(VariationalAutoencoder, n_components=16).fit(X)
        _fast(AutoencoderTransformer, n_components=15).fit(X)


def test_images_without_a_channel_axis_are_read_as_one_channel():
    images = np.random.RandomState(0).rand(20, 7, 9)
    cae = _fast(ConvolutionalAutoencoder, n_components=2, channels=(4,)).fit(images)
    assert cae.image_shape_ == (1, 7, 9)
    assert_allclose(cae.transform(images), cae.transform(images.reshape(20, -1)))
    signals = np.random.RandomState(0).rand(20, 2, 11)
    cae = _fast(ConvolutionalAutoencoder, n_components=2, channels=(4,),
                image_shape=(2, 11)).fit(signals)
    assert cae.image_shape_ == (2, 11)


def test_a_clipped_batch_size_is_said_in_verbose_output(data, capsys):
    X, _ = data
    _fast(AutoencoderTransformer, batch_size=500, verbose=True, max_iter=1).fit(X)
    assert "batch_size=500 is larger than the 72 training samples; using 72" in \
        capsys.readouterr().out


def test_the_fused_optimizer_falls_back_on_any_failure(data, monkeypatch):
    """The private fused kernel may be missing or changed in other torch
    builds; training then uses the plain formula, to float tolerance."""
    X, _ = data
    reference = _fast(AutoencoderTransformer, n_components=3).fit(X).transform(X)

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for this build")

    monkeypatch.setattr(torch, "_fused_adam_", broken)
    fallback = _fast(AutoencoderTransformer, n_components=3).fit(X).transform(X)
    assert_allclose(fallback, reference, rtol=1e-4, atol=1e-5)
    monkeypatch.delattr(torch, "_fused_adam_")
    assert_allclose(_fast(AutoencoderTransformer, n_components=3).fit(X).transform(X),
                    reference, rtol=1e-4, atol=1e-5)


def test_public_names():
    for name in ("TrainingDivergedError", "EpochRecord", "Callback", "ProgressBar"):
        assert name in skae.__all__ and hasattr(skae, name)
