"""to_onnx: every autoencoder's inference methods as ONNX files that onnxruntime
runs, without torch, with the estimator's outputs to 1e-4 in float32."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.exceptions import NotFittedError

from skae import AutoencoderTransformer, ConvolutionalAutoencoder, VariationalAutoencoder
from skae._base import BaseAutoencoder
from skae._onnx import METHODS, scores_by_density
from skae.utils import all_estimators

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Every autoencoder skae exports, those added later included.
AUTOENCODERS = [E for _, E in all_estimators() if issubclass(E, BaseAutoencoder)]

# float32 outputs of the same computation in torch and in onnxruntime.
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


def fast(Estimator, **params):
    return Estimator(**{"n_components": 3, "max_iter": 3, "random_state": 0, "device": "cpu",
                        **params})


@pytest.fixture(scope="module")
def pixels(digits):
    return digits[0][:200].astype(np.float32)


@pytest.fixture(scope="module", params=AUTOENCODERS, ids=lambda E: E.__name__)
def fitted(request, pixels):
    return fast(request.param).fit(pixels)


def run_onnx(path, rows):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    return session.run(None, {given.name: rows})[0]


def inputs_for(estimator, method, rows):
    return estimator.transform(rows) if method == "inverse_transform" else rows


@pytest.mark.parametrize("method", sorted(METHODS))
def test_onnxruntime_gives_the_estimators_output(fitted, pixels, method, tmp_path):
    path = tmp_path / "model.onnx"
    if method == "score_samples" and scores_by_density(fitted):
        # A squared error's score is a density with the decoder's Jacobian in it.
        with pytest.raises(NotImplementedError, match="Jacobian.*method='transform'"):
            fitted.to_onnx(path, method=method)
        assert not path.exists()
        return
    assert fitted.to_onnx(path, method=method) == path
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (given,), (output,) = session.get_inputs(), session.get_outputs()
    assert given.name == METHODS[method][1] and output.name == METHODS[method][2]
    assert isinstance(given.shape[0], str)  # the number of rows is symbolic
    assert [entry.name for entry in tmp_path.iterdir()] == ["model.onnx"]  # one file
    # Row counts other than the two rows the network was traced with.
    for n_rows in (1, 37, 200):
        rows = inputs_for(fitted, method, pixels[:n_rows])
        expected = getattr(fitted, method)(rows)
        (result,) = session.run(None, {given.name: rows})
        assert result.dtype == np.float32 and result.shape == expected.shape
        assert_allclose(result, expected, **TOLERANCE)


@pytest.mark.parametrize("Estimator", [AutoencoderTransformer, VariationalAutoencoder],
                         ids=lambda E: E.__name__)
@pytest.mark.parametrize("loss", ["log_loss", "poisson"])
def test_score_samples_under_every_likelihood(Estimator, loss, pixels, tmp_path):
    estimator = fast(Estimator, loss=loss).fit(pixels)
    path = tmp_path / "scores.onnx"
    if Estimator is VariationalAutoencoder and loss == "poisson":
        # log(x!) of the Poisson likelihood is a log-gamma, which ONNX lacks.
        with pytest.raises(NotImplementedError,
                           match=r"VariationalAutoencoder\.score_samples cannot be exported "
                                 r"to ONNX: .*lgamma"):
            estimator.to_onnx(path, method="score_samples")
        estimator.to_onnx(path, method="transform")  # the other methods still export
        assert_allclose(run_onnx(path, pixels), estimator.transform(pixels), **TOLERANCE)
        return
    estimator.to_onnx(path, method="score_samples")
    assert_allclose(run_onnx(path, pixels), estimator.score_samples(pixels), **TOLERANCE)


def test_conv_fitted_on_images_takes_flattened_rows(pixels, tmp_path):
    images = pixels.reshape(-1, 1, 8, 8)
    cae = fast(ConvolutionalAutoencoder, channels=(4, 8)).fit(images)
    cae.to_onnx(tmp_path / "cae.onnx")
    assert_allclose(run_onnx(tmp_path / "cae.onnx", pixels), cae.transform(images),
                    **TOLERANCE)


def test_a_float64_model_exports_in_float32_and_stays_as_it_was(pixels, tmp_path):
    ae = fast(AutoencoderTransformer).fit(pixels.astype(np.float64))
    before = {name: value.clone() for name, value in ae.module_.state_dict().items()}
    training = ae.module_.training
    codes = ae.transform(pixels)
    ae.to_onnx(str(tmp_path / "ae.onnx"), method="inverse_transform")
    assert_allclose(run_onnx(tmp_path / "ae.onnx", codes), ae.inverse_transform(codes),
                    **TOLERANCE)
    # The export traced a copy: the fitted network is unchanged (weights, float32,
    # its mode) and infers as before.
    assert ae.module_.training == training
    assert all(torch.equal(before[name], value)
               for name, value in ae.module_.state_dict().items())
    assert all(p.dtype == torch.float32 for p in ae.module_.parameters())
    np.testing.assert_array_equal(ae.transform(pixels), codes)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_model_fitted_on_cuda_exports(pixels, tmp_path):
    ae = fast(AutoencoderTransformer, device="cuda").fit(pixels)
    ae.to_onnx(tmp_path / "ae.onnx")
    assert ae.device_.type == "cuda" and next(ae.module_.parameters()).is_cuda
    assert_allclose(run_onnx(tmp_path / "ae.onnx", pixels), ae.transform(pixels), **TOLERANCE)


_WITHOUT_TORCH = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None  # any import of torch now fails
    sys.modules["skae"] = None
    import numpy as np
    import onnxruntime
    path, rows, out = sys.argv[1:]
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    np.save(out, session.run(None, {name: np.load(rows)})[0])
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch absent")
""")


def test_the_file_runs_without_torch(pixels, tmp_path):
    fitted = fast(VariationalAutoencoder).fit(pixels)
    fitted.to_onnx(tmp_path / "model.onnx", method="score_samples")
    np.save(tmp_path / "rows.npy", pixels[:50])
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, str(tmp_path / "model.onnx"),
         str(tmp_path / "rows.npy"), str(tmp_path / "scores.npy")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "torch absent"
    assert_allclose(np.load(tmp_path / "scores.npy"), fitted.score_samples(pixels[:50]),
                    **TOLERANCE)


@pytest.mark.parametrize("method", ["predict", "fit", "sample", None, 3])
def test_method_must_be_one_that_exports(method, pixels, tmp_path):
    vae = fast(VariationalAutoencoder).fit(pixels)
    with pytest.raises(ValueError, match=r"method must be one of \['inverse_transform', "
                                         r"'score_samples', 'transform'\]"):
        vae.to_onnx(tmp_path / "m.onnx", method=method)
    assert not (tmp_path / "m.onnx").exists()


def test_path_errors(pixels, tmp_path):
    ae = fast(AutoencoderTransformer).fit(pixels)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ae.to_onnx(tmp_path / "missing" / "m.onnx")
    with pytest.raises(TypeError, match="path must be a file path"):
        ae.to_onnx(None)


def test_needs_a_fitted_model(tmp_path):
    with pytest.raises(NotFittedError):
        AutoencoderTransformer().to_onnx(tmp_path / "m.onnx")


def test_missing_exporter_names_the_extra(pixels, tmp_path, monkeypatch):
    ae = fast(AutoencoderTransformer).fit(pixels)
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ImportError, match=r"onnxscript.*pip install 'skae\[onnx\]'"):
        ae.to_onnx(tmp_path / "m.onnx")


def test_an_old_torch_is_named(pixels, tmp_path, monkeypatch):
    ae = fast(AutoencoderTransformer).fit(pixels)
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(ImportError, match=r"torch 2\.6 or later.*this is torch 2\.5\.1"):
        ae.to_onnx(tmp_path / "m.onnx")


# --------------------------------------------------------------------------- #
# skl2onnx: whole pipelines.

def fitted_pipeline(Estimator, X, y):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), fast(Estimator, n_components=8, max_iter=10),
                         LogisticRegression(max_iter=500)).fit(X, y)


@pytest.mark.parametrize("Estimator", [E for E in AUTOENCODERS
                                       if getattr(E, "_skl2onnx_converter", True)],
                         ids=lambda E: E.__name__)
def test_a_pipeline_converts_with_skl2onnx(Estimator, digits):
    skl2onnx = pytest.importorskip("skl2onnx")
    from skae.onnx import register_converters

    X, y = digits[0][:400].astype(np.float32), digits[1][:400]
    pipeline = fitted_pipeline(Estimator, X, y)
    register_converters()
    model = skl2onnx.to_onnx(pipeline, X[:1], target_opset=18, options={"zipmap": False})
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {session.get_inputs()[0].name: X})
    assert_allclose(probabilities, pipeline.predict_proba(X), **TOLERANCE)
    expected = pipeline.predict(X)
    # Labels agree wherever the two most probable classes are not tied to 1e-4.
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    clear = top_two[:, 1] - top_two[:, 0] > 1e-4
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(labels[clear], expected[clear])


def test_pipeline_conversion_errors_name_the_fix(digits):
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import DoubleTensorType

    from skae.onnx import register_converters

    X, y = digits[0][:200].astype(np.float32), digits[1][:200]
    pipeline = fitted_pipeline(AutoencoderTransformer, X, y)
    register_converters()
    with pytest.raises(RuntimeError, match=r"opset 18 or later.*target_opset=17"):
        skl2onnx.to_onnx(pipeline, X[:1], target_opset=17)
    with pytest.raises(TypeError, match="float32 inputs"):
        skl2onnx.to_onnx(pipeline, initial_types=[("X", DoubleTensorType([None, 64]))],
                         target_opset=18)


def test_register_converters_needs_skl2onnx(monkeypatch):
    from skae.onnx import register_converters

    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    with pytest.raises(ImportError, match="pip install skl2onnx"):
        register_converters()
