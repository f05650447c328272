"""Small intersphinx inventories shipped with the docs, so that the build needs no network.

Intersphinx normally downloads each project's ``objects.inv``; the machines the
docs are built on (CI, clusters) often cannot. The docs link to a few dozen
outside names only, so they are listed here with their addresses and written
as inventories at build time. A name missing from this list is not an error: it
renders as plain code, unlinked. Set ``SKAE_DOCS_ONLINE_INVENTORIES=1`` to use
the projects' full, downloaded inventories instead.
"""

import zlib
from pathlib import Path

# project: (base URL, [(name, domain:role, address relative to the base URL)])
# "$" in an address stands for the name, as in Sphinx's own inventories; an
# optional fourth item is the text a :ref: link shows.
PROJECTS = {
    "python": ("https://docs.python.org/3", [
        ("pickle", "py:module", "library/pickle.html#module-$"),
        ("pickle.dump", "py:function", "library/pickle.html#$"),
        ("pickle.load", "py:function", "library/pickle.html#$"),
        ("os.replace", "py:function", "library/os.html#$"),
        ("argparse", "py:module", "library/argparse.html#module-$"),
        ("KeyboardInterrupt", "py:exception", "library/exceptions.html#$"),
        ("ValueError", "py:exception", "library/exceptions.html#$"),
        ("TypeError", "py:exception", "library/exceptions.html#$"),
        ("float", "py:class", "library/functions.html#$"),
        ("int", "py:class", "library/functions.html#$"),
        ("bool", "py:class", "library/functions.html#$"),
        ("str", "py:class", "library/stdtypes.html#$"),
        ("dict", "py:class", "library/stdtypes.html#$"),
        ("list", "py:class", "library/stdtypes.html#$"),
    ]),
    "numpy": ("https://numpy.org/doc/stable", [
        ("numpy.ndarray", "py:class", "reference/generated/$.html#$"),
        ("numpy.memmap", "py:class", "reference/generated/$.html#$"),
        ("numpy.load", "py:function", "reference/generated/$.html#$"),
        ("numpy.random.RandomState", "py:class", "reference/random/legacy.html#$"),
    ]),
    "sklearn": ("https://scikit-learn.org/stable", [
        (name, role, "modules/generated/$.html#$") for name, role in [
            ("sklearn.base.BaseEstimator", "py:class"),
            ("sklearn.base.clone", "py:function"),
            ("sklearn.compose.ColumnTransformer", "py:class"),
            ("sklearn.decomposition.PCA", "py:class"),
            ("sklearn.decomposition.IncrementalPCA", "py:class"),
            ("sklearn.ensemble.IsolationForest", "py:class"),
            ("sklearn.exceptions.ConvergenceWarning", "py:class"),
            ("sklearn.linear_model.LogisticRegression", "py:class"),
            ("sklearn.manifold.TSNE", "py:class"),
            ("sklearn.manifold.trustworthiness", "py:function"),
            ("sklearn.metrics.roc_auc_score", "py:function"),
            ("sklearn.model_selection.GridSearchCV", "py:class"),
            ("sklearn.model_selection.RandomizedSearchCV", "py:class"),
            ("sklearn.model_selection.train_test_split", "py:function"),
            ("sklearn.neural_network.MLPClassifier", "py:class"),
            ("sklearn.neural_network.MLPRegressor", "py:class"),
            ("sklearn.pipeline.Pipeline", "py:class"),
            ("sklearn.pipeline.make_pipeline", "py:function"),
            ("sklearn.preprocessing.MinMaxScaler", "py:class"),
            ("sklearn.preprocessing.StandardScaler", "py:class"),
            ("sklearn.preprocessing.OneHotEncoder", "py:class"),
            ("sklearn.semi_supervised.SelfTrainingClassifier", "py:class"),
            ("sklearn.utils.estimator_checks.parametrize_with_checks", "py:function"),
        ]
    ] + [
        # Labels that scikit-learn's own docstrings (inherited by skae's
        # estimators, e.g. get_metadata_routing, set_output) refer to.
        ("metadata_routing", "std:label", "metadata_routing.html#metadata-routing",
         "Metadata routing"),
        ("df_output_transform", "std:label", "auto_examples/miscellaneous/plot_set_output.html",
         "Introducing the set_output API"),
        ("sphx_glr_auto_examples_miscellaneous_plot_set_output.py", "std:label",
         "auto_examples/miscellaneous/plot_set_output.html", "Introducing the set_output API"),
        ("accuracy_score", "std:label", "modules/model_evaluation.html#accuracy-score",
         "Accuracy score"),
        ("meta-estimator", "std:term", "glossary.html#term-meta-estimator", "meta-estimator"),
        ("model_persistence", "std:label", "model_persistence.html#model-persistence",
         "Model persistence"),
    ]),
    "torch": ("https://docs.pytorch.org/docs/stable", [
        ("torch.device", "py:class", "tensor_attributes.html#$"),
        ("torch.set_num_threads", "py:function", "generated/$.html#$"),
        ("torch.nn.Module", "py:class", "generated/$.html#$"),
        ("torch.nn.Dropout", "py:class", "generated/$.html#$"),
        ("torch.inference_mode", "py:class", "generated/$.html#$"),
        ("torch.nn.parallel.DistributedDataParallel", "py:class", "generated/$.html#$"),
    ]),
    "pandas": ("https://pandas.pydata.org/docs", [
        ("pandas.DataFrame", "py:class", "reference/api/$.html#$"),
        ("pandas.read_csv", "py:function", "reference/api/$.html#$"),
        ("pandas.read_parquet", "py:function", "reference/api/$.html#$"),
    ]),
    "dask_ml": ("https://ml.dask.org", [
        ("dask_ml.wrappers.Incremental", "py:class", "modules/generated/$.html#$"),
    ]),
    "joblib": ("https://joblib.readthedocs.io/en/stable", [
        ("joblib.parallel_config", "py:class", "generated/$.html#$"),
        ("joblib.Parallel", "py:class", "generated/$.html#$"),
    ]),
}


def write_inventory(path, project, entries):
    """Write ``entries`` as a version-2 Sphinx inventory (``objects.inv``) at ``path``."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        "# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    # name domain:role priority address display-name ("-": the name itself)
    body = "".join(
        f"{name} {role} 1 {address.replace('$', name)} {display[0] if display else '-'}\n"
        for name, role, address, *display in entries)
    Path(path).write_bytes(header.encode() + zlib.compress(body.encode()))


def intersphinx_mapping(directory):
    """Write every inventory into ``directory``; return the ``intersphinx_mapping``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    mapping = {}
    for project, (url, entries) in PROJECTS.items():
        path = directory / f"{project}.inv"
        write_inventory(path, project, entries)
        mapping[project] = (url, str(path))
    return mapping
