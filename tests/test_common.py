"""scikit-learn's estimator checks over every public skae estimator.

Estimators are checked with their default parameters, so that a new public
estimator is checked without editing this file.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skae.utils import all_estimators


def _expected_failures(estimator):
    """An estimator may declare checks it fails, with a reason, in
    ``_expected_check_failures``; none should unless its issue says so."""
    return getattr(estimator, "_expected_check_failures", dict)()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [Estimator() for _, Estimator in all_estimators()],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_all_estimators_found():
    assert "AutoencoderTransformer" in dict(all_estimators())


def test_fitting_imports_neither_dynamo_nor_sympy():
    """torch.optim and meta-device forward passes import torch._dynamo and sympy,
    which costs a second or more on the first fit of a process (longer than a
    whole digits fit); no skae estimator may need them."""
    import subprocess
    import sys

    # Some torch releases (2.4 does) import sympy to initialise any module on
    # the meta device, where skae counts a network's parameters before it
    # allocates them (_check_network_fits): there the premise does not hold.
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, torch\nwith torch.device('meta'):\n"
         "    torch.nn.Linear(2, 2)\nprint('sympy' in sys.modules)"],
        capture_output=True, text=True, check=True)
    if probe.stdout.strip() == "True":
        pytest.skip("this torch imports sympy to build a module on the meta device")
    code = (
        "import sys, warnings\n"
        "import numpy as np, pickle\n"
        "from skae.utils import all_estimators\n"
        "warnings.simplefilter('ignore')\n"
        "X = np.random.RandomState(0).normal(size=(40, 16)); y = np.arange(40) % 2\n"
        "for name, Estimator in all_estimators():\n"
        "    model = Estimator(max_iter=2).fit(X, y)\n"
        "    pickle.loads(pickle.dumps(model))\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
