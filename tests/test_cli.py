"""The ``skae`` command line, on small tables in a temporary folder.

The commands a user types run through the installed console script in a
subprocess (``python -m skae`` where the script is not installed). Each such
run pays for importing torch (about 3 s here), so the many bad-input cases
call the same ``main`` in this process, where the exit status and stderr are
checked just as well.
"""

import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_wine

from skae import persistence
from skae._cli import main

skops_io = pytest.importorskip("skops.io")
pytest.importorskip("pyarrow")

FAST = ["--max-iter", "3", "--random-state", "0"]


def command():
    """The installed console script beside this interpreter, else ``python -m skae``."""
    script = shutil.which("skae", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "skae"]


def cli(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*command(), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def run(capsys, *args):
    """``skae ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        status = main([str(arg) for arg in args])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def wine_frame():
    frame = load_wine(as_frame=True).frame.drop(columns="target")
    frame.insert(0, "id", [f"w{i}" for i in range(len(frame))])
    return frame


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "wine.csv"
    wine_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A table, the codes ``skae reduce`` wrote for it, and the model it saved."""
    folder = tmp_path_factory.mktemp("saved")
    wine_frame().to_csv(folder / "wine.csv", index=False)
    result = cli("reduce", "wine.csv", "-o", "codes.csv", "--keep", "id", "--n-components", "3",
                 "--save", "model.skops", "--quiet", *FAST, cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder


def assert_one_line_error(status, err, *fragments):
    """Exit status 2 and one error line (after training, --quiet's warnings may precede it)."""
    assert status == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("skae: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("skae: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


def leftovers(folder, name):
    """The output, or temporary files made for it, left in ``folder``."""
    return sorted(path.name for path in Path(folder).iterdir() if name in path.name)


# ---------------------------------------------------------------------- #
# The console script.

def test_reduce_writes_codes_with_kept_columns_and_a_figure(table, tmp_path):
    result = cli("reduce", table, "-o", "codes.csv", "--keep", "id", "--plot", "fit.png",
                 "--hidden", "16", *FAST, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # progress and the summary go to stderr
    assert "codes.csv" in result.stderr.strip().splitlines()[-1]
    codes = pd.read_csv(tmp_path / "codes.csv")
    assert list(codes.columns) == ["id", "autoencodertransformer0", "autoencodertransformer1"]
    assert_allclose(codes["id"].str[1:].astype(int), np.arange(178))
    assert np.isfinite(codes.iloc[:, 1:].to_numpy()).all()
    assert (tmp_path / "fit.png").stat().st_size > 10_000


def test_bad_input_through_the_console_script(tmp_path):
    wine_frame().assign(colour="red").to_csv(tmp_path / "wine.csv", index=False)
    result = cli("reduce", "wine.csv", "-o", "codes.csv", "--keep", "id", cwd=tmp_path)
    assert_one_line_error(result.returncode, result.stderr, "'colour'", "--keep")
    assert leftovers(tmp_path, "codes") == []


def test_python_dash_m_skae_help_shows_every_command_and_examples(tmp_path):
    result = subprocess.run([sys.executable, "-m", "skae", "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    for name in ["reduce", "transform", "reconstruct", "score", "sample", "examples:"]:
        assert name in result.stdout


# ---------------------------------------------------------------------- #
# Saved models (skops) and the commands that use them.

def test_saved_model_names_only_the_types_skae_trusts(saved):
    assert persistence.untrusted_types(saved / "model.skops") == []
    model = persistence.load(saved / "model.skops")
    assert [name for name, _ in model.steps] == ["standardscaler", "autoencodertransformer"]


def test_transform_gives_the_codes_reduce_wrote(saved):
    result = cli("transform", "--model", "model.skops", "wine.csv", "-o", "again.parquet",
                 "--keep", "id", cwd=saved)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    codes, again = pd.read_csv(saved / "codes.csv"), pd.read_parquet(saved / "again.parquet")
    assert list(again.columns) == list(codes.columns)
    assert (again["id"] == codes["id"]).all()
    assert_allclose(again.iloc[:, 1:], codes.iloc[:, 1:], rtol=1e-5, atol=1e-6)


def test_reconstruct_writes_rows_in_the_table_units(capsys, saved, tmp_path):
    status, _, err = run(capsys, "reconstruct", "--model", saved / "model.skops",
                         saved / "wine.csv", "-o", tmp_path / "rebuilt.tsv", "--keep", "id")
    assert status == 0, err
    rebuilt, original = pd.read_csv(tmp_path / "rebuilt.tsv", sep="\t"), wine_frame()
    assert list(rebuilt.columns) == list(original.columns)
    # The scaler saved with the model maps back to the table's units.
    scale = original.iloc[:, 1:].std()
    assert (np.abs(rebuilt.iloc[:, 1:] - original.iloc[:, 1:]).mean() < 3 * scale).all()


def test_score_top_keeps_the_worst_rows_first(capsys, saved, tmp_path):
    status, _, err = run(capsys, "score", "--model", saved / "model.skops", saved / "wine.csv",
                         "-o", tmp_path / "all.csv")
    assert status == 0, err
    status, _, err = run(capsys, "score", "--model", saved / "model.skops", saved / "wine.csv",
                         "-o", tmp_path / "top.csv", "--keep", "id", "--top", "5", "--quiet")
    assert status == 0, err
    every, top = pd.read_csv(tmp_path / "all.csv"), pd.read_csv(tmp_path / "top.csv")
    assert list(top.columns) == ["row", "id", "reconstruction_error"]
    expected = np.argsort(-every["reconstruction_error"].to_numpy(), kind="stable")[:5]
    assert list(top["row"]) == list(expected)
    assert list(top["id"]) == [f"w{row}" for row in expected]
    assert_allclose(top["reconstruction_error"], every["reconstruction_error"][expected])
    assert (np.diff(top["reconstruction_error"]) <= 0).all()


def test_sample_from_a_saved_vae(capsys, table, tmp_path):
    status, _, err = run(capsys, "reduce", table, "-o", tmp_path / "codes.csv", "--keep", "id",
                         "--model", "vae", "--save", tmp_path / "vae.skops", "--quiet", *FAST)
    assert status == 0, err
    status, out, err = run(capsys, "sample", "--model", tmp_path / "vae.skops", "-n", "7",
                           "-o", tmp_path / "rows.csv", "--random-state", "0")
    assert status == 0, err
    assert out == ""
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert rows.shape == (7, 13)
    assert list(rows.columns) == list(wine_frame().columns[1:])


def test_sample_refuses_a_model_that_is_not_a_vae(capsys, saved, tmp_path):
    status, _, err = run(capsys, "sample", "--model", saved / "model.skops", "-n", "3",
                         "-o", tmp_path / "rows.csv")
    assert_one_line_error(status, err, "variational")
    assert leftovers(tmp_path, "rows") == []


def test_wrong_columns_for_a_saved_model(capsys, saved, tmp_path):
    wine_frame().drop(columns=["ash", "hue"]).to_csv(tmp_path / "narrow.csv", index=False)
    status, _, err = run(capsys, "transform", "--model", saved / "model.skops",
                         tmp_path / "narrow.csv", "-o", tmp_path / "codes.csv")
    assert_one_line_error(status, err, "'ash'", "'hue'")
    assert leftovers(tmp_path, "codes") == []


@pytest.mark.parametrize("scale, first_step", [("minmax", "MinMaxScaler"), ("none", None)])
def test_scale_is_part_of_the_saved_model(capsys, table, tmp_path, scale, first_step):
    status, _, err = run(capsys, "reduce", table, "-o", tmp_path / "codes.csv", "--keep", "id",
                         "--scale", scale, "--save", tmp_path / "m.skops", "--quiet", *FAST)
    assert status == 0, err
    path = tmp_path / "m.skops"
    model = persistence.load(path)
    if first_step is None:
        assert type(model).__name__ == "AutoencoderTransformer"
    else:
        assert type(model.steps[0][1]).__name__ == first_step
    for command in ["transform", "reconstruct", "score"]:
        status, out, err = run(capsys, command, "--model", path, table, "-o",
                               tmp_path / f"{command}.csv", "--keep", "id")
        assert status == 0 and out == "", err
        assert "warning" not in err  # e.g. about feature names lost on the way


# ---------------------------------------------------------------------- #
# Formats and options, in this process.

@pytest.mark.parametrize("source, destination", [
    ("wine.parquet", "codes.tsv"), ("wine.tsv", "codes.parquet"), ("wine.csv.gz", "codes.csv"),
])
def test_formats_follow_the_extensions(capsys, tmp_path, source, destination):
    frame = wine_frame()
    if source.endswith(".parquet"):
        frame.to_parquet(tmp_path / source)
    else:
        frame.to_csv(tmp_path / source, sep="\t" if ".tsv" in source else ",", index=False)
    status, out, err = run(capsys, "reduce", tmp_path / source, "-o", tmp_path / destination,
                           "--keep", "id", "--quiet", *FAST)
    assert status == 0, err
    assert out == ""
    codes = (pd.read_parquet if destination.endswith(".parquet") else pd.read_csv)(
        tmp_path / destination, **({"sep": "\t"} if destination.endswith(".tsv") else {}))
    assert codes.shape == (178, 3)
    assert list(codes["id"]) == list(frame["id"])


def test_keep_carries_several_columns_and_fits_on_the_rest(capsys, tmp_path):
    frame = wine_frame().assign(batch="b1", flag=True)
    frame.to_csv(tmp_path / "wine.csv", index=False)
    status, _, err = run(capsys, "reduce", tmp_path / "wine.csv", "-o", tmp_path / "codes.csv",
                         "--keep", "id", "--keep", "batch", "--n-components", "4",
                         "--save", tmp_path / "m.skops", "--quiet", *FAST)
    assert status == 0, err
    codes = pd.read_csv(tmp_path / "codes.csv")
    assert list(codes.columns[:2]) == ["id", "batch"] and codes.shape == (178, 6)
    model = persistence.load(tmp_path / "m.skops")
    # The boolean column is numeric, so it is a feature; the kept ones are not.
    assert list(model.feature_names_in_) == [*wine_frame().columns[1:], "flag"]


def test_random_state_makes_reduce_reproducible(capsys, table, tmp_path):
    for name in ["a.csv", "b.csv"]:
        status, _, err = run(capsys, "reduce", table, "-o", tmp_path / name, "--keep", "id",
                             "--model", "dae", "--quiet", *FAST)
        assert status == 0, err
    first, second = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert_allclose(first.iloc[:, 1:], second.iloc[:, 1:], rtol=1e-6)


def test_quiet_prints_only_warnings(capsys, table, tmp_path):
    status, out, err = run(capsys, "reduce", table, "-o", tmp_path / "codes.csv", "--keep", "id",
                           "--quiet", *FAST)
    assert status == 0
    assert out == ""
    assert all(line.startswith("skae: warning: ") for line in err.splitlines()), err
    status, out, err = run(capsys, "reduce", table, "-o", tmp_path / "codes.csv", "--keep", "id",
                           *FAST)
    assert out == "" and "skae: AutoencoderTransformer: 3 epochs" in err


# ---------------------------------------------------------------------- #
# Bad input: one line on stderr, exit status 2, no output file.

def _write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


BAD_INPUTS = {
    "missing file": (lambda d: None, ["reduce", "{d}/absent.csv", "-o", "{d}/out.csv"],
                     ["absent.csv", "no such file"]),
    "unknown input extension": (lambda d: _write(d / "t.xlsx", "a,b\n1,2\n"),
                                ["reduce", "{d}/t.xlsx", "-o", "{d}/out.csv"],
                                [".csv", ".parquet"]),
    "unknown output extension": (lambda d: None, ["reduce", "{table}", "-o", "{d}/out.json"],
                                 ["out.json", "unknown table format"]),
    "not numeric": (lambda d: wine_frame().assign(colour="red").to_csv(d / "t.csv", index=False),
                    ["reduce", "{d}/t.csv", "-o", "{d}/out.csv"],
                    ["'id'", "'colour'", "--keep", "encode"]),
    "NaN": (lambda d: wine_frame().assign(ash=np.nan, hue=np.nan).to_csv(d / "t.csv",
                                                                         index=False),
            ["reduce", "{d}/t.csv", "-o", "{d}/out.csv", "--keep", "id"],
            ["'ash'", "'hue'", "NaN"]),
    "unknown --keep column": (lambda d: None,
                              ["reduce", "{table}", "-o", "{d}/out.csv", "--keep", "ident"],
                              ["'ident'", "no such column"]),
    "undecodable CSV": (lambda d: _write(d / "t.csv", b"a,b\n\xff\xfe\x00,1\n"),
                        ["reduce", "{d}/t.csv", "-o", "{d}/out.csv"], ["cannot read"]),
    "unreadable Parquet": (lambda d: _write(d / "t.parquet", "a,b\n1,2\n"),
                           ["reduce", "{d}/t.parquet", "-o", "{d}/out.csv"],
                           ["cannot read", "parquet"]),
    "empty file": (lambda d: _write(d / "t.csv", ""), ["reduce", "{d}/t.csv", "-o", "{d}/out.csv"],
                   ["empty"]),
    "no numeric column": (lambda d: _write(d / "t.csv", "id\na\nb\n"),
                          ["reduce", "{d}/t.csv", "-o", "{d}/out.csv", "--keep", "id"],
                          ["no numeric column"]),
    "missing output folder": (lambda d: None, ["reduce", "{table}", "-o", "{d}/no/out.csv"],
                              ["does not exist"]),
    "--save without .skops": (lambda d: None,
                              ["reduce", "{table}", "-o", "{d}/out.csv", "--keep", "id",
                               "--save", "{d}/m.pkl"], [".skops"]),
    "unreadable model": (lambda d: _write(d / "m.skops", "not a model"),
                         ["transform", "--model", "{d}/m.skops", "{table}", "-o", "{d}/out.csv"],
                         ["cannot read model", "skops"]),
    "missing model": (lambda d: None,
                      ["score", "--model", "{d}/m.skops", "{table}", "-o", "{d}/out.csv"],
                      ["m.skops", "no such file"]),
    "model with foreign types": (
        lambda d: skops_io.dump(collections.Counter(a=1), d / "m.skops"),
        ["transform", "--model", "{d}/m.skops", "{table}", "-o", "{d}/out.csv"],
        ["refusing", "collections.Counter"]),
    "model that is not skae's": (
        lambda d: skops_io.dump({"weights": np.zeros(3)}, d / "m.skops"),
        ["reconstruct", "--model", "{d}/m.skops", "{table}", "-o", "{d}/out.csv"],
        ["not a model saved by skae reduce"]),
    "bad --hidden": (lambda d: None, ["reduce", "{table}", "-o", "{d}/out.csv", "--hidden", "8,x"],
                     ["--hidden", "'8,x'"]),
    "unavailable device": (lambda d: None,
                           ["reduce", "{table}", "-o", "{d}/out.csv", "--keep", "id",
                            "--device", "cuda:7"], ["cuda:7"]),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_status_2(capsys, table, tmp_path, case):
    prepare, args, fragments = BAD_INPUTS[case]
    folder = tmp_path / "case"
    folder.mkdir()
    prepare(folder)
    args = [arg.format(d=folder, table=table) for arg in args]
    if args[0] == "reduce":
        args += FAST
    status, out, err = run(capsys, *args)
    assert_one_line_error(status, err, *fragments)
    assert out == ""
    assert leftovers(folder, "out") == []


def test_without_skops_saving_says_what_to_install(capsys, table, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skops", None)
    monkeypatch.setitem(sys.modules, "skops.io", None)
    status, _, err = run(capsys, "reduce", table, "-o", tmp_path / "out.csv", "--keep", "id",
                         "--save", tmp_path / "m.skops", *FAST)
    assert_one_line_error(status, err, 'pip install "skae[cli]"')
    assert leftovers(tmp_path, "out") == []


# ---------------------------------------------------------------------- #
# Atomic writes.

def test_a_failed_write_leaves_the_previous_output_untouched(capsys, table, tmp_path,
                                                            monkeypatch):
    destination = tmp_path / "codes.csv"
    destination.write_text("previous run\n")

    def write_half_then_fail(self, path, *args, **kwargs):
        Path(path).write_text("id,autoenc")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", write_half_then_fail)
    status, _, err = run(capsys, "reduce", table, "-o", destination, "--keep", "id", "--quiet",
                         *FAST)
    assert_one_line_error(status, err, "No space left on device")
    assert destination.read_text() == "previous run\n"
    assert leftovers(tmp_path, "codes") == ["codes.csv"]  # no temporary file left


def test_an_interrupt_while_writing_leaves_no_file(capsys, table, tmp_path, monkeypatch):
    def interrupted(self, path, *args, **kwargs):
        Path(path).write_text("id,autoenc")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", interrupted)
    status, _, err = run(capsys, "reduce", table, "-o", tmp_path / "codes.csv", "--keep", "id",
                         *FAST)
    assert status == 130 and "Traceback" not in err
    assert leftovers(tmp_path, "codes") == []


def test_outputs_of_one_run_are_written_all_or_none(capsys, table, tmp_path, monkeypatch):
    """A model that cannot be saved leaves no codes file either."""
    def refuse(model, file):
        raise TypeError("cannot represent this object")

    monkeypatch.setattr(skops_io, "dump", refuse)
    status, _, err = run(capsys, "reduce", table, "-o", tmp_path / "codes.csv", "--keep", "id",
                         "--save", tmp_path / "m.skops", "--quiet", *FAST)
    assert_one_line_error(status, err, "cannot save the model", "m.skops")
    assert leftovers(tmp_path, "codes") == [] and leftovers(tmp_path, "m.skops") == []


# ---------------------------------------------------------------------- #
# --keep names a column the command writes.

@pytest.mark.parametrize("args, column", [
    (["score", "--model", "{saved}/model.skops", "{saved}/wine.csv", "--keep",
      "reconstruction_error"], "reconstruction_error"),
    (["score", "--model", "{saved}/model.skops", "{saved}/wine.csv", "--keep", "row",
      "--top", "3"], "row"),
    (["reduce", "{saved}/wine.csv", "--keep", "id", "autoencodertransformer0", *FAST],
     "autoencodertransformer0"),
    (["reduce", "{saved}/wine.csv", "--model", "vae", "--keep", "variationalautoencoder1",
      *FAST], "variationalautoencoder1"),
    (["transform", "--model", "{saved}/model.skops", "{saved}/wine.csv", "--keep",
      "autoencodertransformer2"], "autoencodertransformer2"),
    (["reduce", "{saved}/wine.csv", "--keep", "id", "--keep", "id", *FAST], "id"),
])
def test_keep_naming_an_output_column_is_refused(capsys, saved, tmp_path, args, column):
    # A table whose extra column has the output's name, so that the name is valid input.
    table = pd.read_csv(saved / "wine.csv")
    if column not in table.columns:
        table[column] = "x"
    table.to_csv(tmp_path / "wine.csv", index=False)
    args = [arg.format(saved=saved).replace(f"{saved}/wine.csv", str(tmp_path / "wine.csv"))
            for arg in args]
    status, out, err = run(capsys, *args, "-o", tmp_path / "out.csv")
    assert_one_line_error(status, err, f"--keep '{column}'")
    assert out == "" and leftovers(tmp_path, "out") == []


# ---------------------------------------------------------------------- #
# Paths are checked before anything heavy is imported or trained.

HEAVY = ["torch", "sklearn", "pandas", "skops", "numpy"]

PROBE = f"""\
import sys
from skae._cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit_:
    status = exit_.code
print(status, *sorted(name for name in {HEAVY!r} if name in sys.modules))
"""


def probe(*args, cwd):
    """``skae ARGS`` in a fresh interpreter: (its stdout: status and heavy modules, stderr)."""
    root = str(Path(__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    return result.stdout.split(), result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["transform", "--model", "nosuch.skops", "wine.csv", "-o", "out.csv"], "nosuch.skops"),
    (["reconstruct", "--model", "model.skops", "nosuch.csv", "-o", "out.csv"], "nosuch.csv"),
    (["score", "--model", "model.skops", "wine.csv", "-o", "nodir/out.csv"], "nodir"),
    (["sample", "--model", "nosuch.skops", "-n", "3", "-o", "out.csv"], "nosuch.skops"),
    (["reduce", "wine.csv", "-o", "out.csv", "--keep", "id", "--save", "nodir/m.skops"],
     "nodir"),
    (["reduce", "wine.csv", "-o", "out.csv", "--keep", "id", "--save", "m.pkl"], ".skops"),
    (["reduce", "wine.csv", "-o", "out.json"], "out.json"),
    (["reduce", "wine.csv", "-o", "out.csv", "--plot", "nodir/fit.png"], "nodir"),
    (["score", "--model", "model.skops", "wine.csv", "-o", "out.csv", "--keep",
      "reconstruction_error"], "reconstruction_error"),
])
def test_a_bad_path_fails_before_importing_torch(saved, args, fragment):
    stdout, err = probe(*args, cwd=saved)
    assert stdout == ["2"], (stdout, err)  # exit status 2, none of HEAVY imported
    assert_one_line_error(2, err, fragment)


def test_help_imports_nothing_heavy(tmp_path):
    stdout, err = probe("reduce", "--help", cwd=tmp_path)
    assert stdout[-1:] == ["0"], (stdout, err)


# ---------------------------------------------------------------------- #
# Errors: only parameter and data errors become one line.

def test_a_memory_error_is_one_line(capsys, table, tmp_path, monkeypatch):
    import skae

    def fit(self, X, y=None):
        raise MemoryError("hidden_layer_sizes=(1000000000000,) needs 7.3 TiB for the weights")

    monkeypatch.setattr(skae.AutoencoderTransformer, "fit", fit)
    status, out, err = run(capsys, "reduce", table, "-o", tmp_path / "out.csv", "--keep", "id",
                           "--hidden", "1000000000000", *FAST)
    assert_one_line_error(status, err, "out of memory", "hidden_layer_sizes")
    assert leftovers(tmp_path, "out") == []


def test_a_network_no_machine_holds_is_one_line_through_the_console_script(tmp_path):
    """Before, torch's allocator error escaped as a 50-line traceback, exit 1."""
    wine_frame().to_csv(tmp_path / "wine.csv", index=False)
    result = cli("reduce", "wine.csv", "-o", "codes.csv", "--keep", "id",
                 "--hidden", "1000000000000", cwd=tmp_path)
    assert_one_line_error(result.returncode, result.stderr, "out of memory",
                          "hidden_layer_sizes=(1000000000000,)")
    assert leftovers(tmp_path, "codes") == []


def test_a_type_error_from_a_bug_keeps_its_traceback(capsys, table, tmp_path, monkeypatch):
    import skae

    def fit(self, X, y=None):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'")

    monkeypatch.setattr(skae.AutoencoderTransformer, "fit", fit)
    with pytest.raises(TypeError, match="unsupported operand"):
        main([str(arg) for arg in ["reduce", table, "-o", tmp_path / "out.csv", "--keep",
                                   "id", *FAST]])
    assert leftovers(tmp_path, "out") == []


def test_an_invalid_parameter_is_one_line(capsys, table, tmp_path):
    status, _, err = run(capsys, "reduce", table, "-o", tmp_path / "out.csv", "--keep", "id",
                         "--device", "tpu", *FAST)
    assert_one_line_error(status, err, "tpu")


def test_model_choices_name_each_estimator():
    import skae
    from skae._cli import MODELS, build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["reduce"].format_help()
    for key, name in MODELS.items():
        assert isinstance(getattr(skae, name), type)
        assert f"{key}: {name}" in " ".join(help_text.split())


# ---------------------------------------------------------------------- #
# Ctrl-C and SIGTERM: exit 128 + the signal, earlier files as they were.

@pytest.fixture(scope="module")
def slow_table(tmp_path_factory):
    """A table whose fit takes about half a second an epoch, for many epochs."""
    path = tmp_path_factory.mktemp("slow") / "noise.csv"
    frame = pd.DataFrame(np.random.RandomState(0).normal(size=(20000, 20)),
                         columns=[f"x{i}" for i in range(20)])
    frame.insert(0, "id", range(len(frame)))
    frame.to_csv(path, index=False)
    return path


def interrupt_reduce(slow_table, folder, signum, delay):
    """Start ``skae reduce``, send ``signum`` ``delay`` s after epoch 1 ends; (status, stderr)."""
    root = str(Path(__file__).parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "skae", "reduce", str(slow_table), "-o", "codes.csv",
         "--keep", "id", "--save", "m.skops", "--hidden", "256,256", "--max-iter", "10000",
         "--random-state", "0"],
        cwd=folder, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        lines = []
        for line in process.stderr:
            lines.append(line)
            if line.split()[:1] == ["1"]:  # the row of epoch 1 in the progress table
                break
        else:
            pytest.fail("training ended before its first epoch:\n" + "".join(lines))
        time.sleep(delay)
        process.send_signal(signum)
        rest = process.stderr.read()
        status = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return status, "".join(lines) + rest


SIGNAL_RUNS = [("SIGINT", 130, 0.0), ("SIGTERM", 143, 0.3), ("SIGHUP", 129, 1.2)]
# The same at other moments of training (each run costs about 10 s of imports
# and reading): with -m slow.
SIGNAL_RUNS += [pytest.param(*run, marks=pytest.mark.slow) for run in [
    ("SIGINT", 130, 0.3), ("SIGINT", 130, 1.2), ("SIGINT", 130, 2.5),
    ("SIGTERM", 143, 0.0), ("SIGTERM", 143, 1.2), ("SIGTERM", 143, 2.5),
    ("SIGHUP", 129, 0.0)]]


@pytest.mark.parametrize("name, status, delay", SIGNAL_RUNS)
def test_a_signal_during_training_aborts_and_leaves_earlier_files(slow_table, tmp_path,
                                                                  name, status, delay):
    signum = getattr(signal, name, None)
    if signum is None:
        pytest.skip(f"no {name} on this platform")
    (tmp_path / "codes.csv").write_bytes(b"earlier codes\n")
    (tmp_path / "m.skops").write_bytes(b"earlier model")
    got, err = interrupt_reduce(slow_table, tmp_path, signum, delay)
    assert got == status, err
    assert err.strip().splitlines()[-1].startswith(f"skae: interrupted ({name})"), err
    assert "Traceback" not in err
    assert (tmp_path / "codes.csv").read_bytes() == b"earlier codes\n"
    assert (tmp_path / "m.skops").read_bytes() == b"earlier model"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["codes.csv", "m.skops"]


def test_a_signal_while_writing_removes_the_temporary_files(capsys, table, tmp_path,
                                                           monkeypatch):
    (tmp_path / "codes.csv").write_bytes(b"earlier codes\n")
    (tmp_path / "m.skops").write_bytes(b"earlier model")
    original = skops_io.dump

    def dump_then_terminated(model, file):
        original(model, file)  # the model's temporary file is complete
        os.kill(os.getpid(), signal.SIGTERM)

    def unhandled(signum, frame):
        raise AssertionError("SIGTERM reached the test's handler, not the command's")

    monkeypatch.setattr(skops_io, "dump", dump_then_terminated)
    previous = signal.signal(signal.SIGTERM, unhandled)  # never the runner's death
    try:
        status, _, err = run(capsys, "reduce", table, "-o", tmp_path / "codes.csv", "--keep",
                             "id", "--save", tmp_path / "m.skops", "--quiet", *FAST)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # main put it back
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert status == 143 and "skae: interrupted (SIGTERM)" in err, err
    assert (tmp_path / "codes.csv").read_bytes() == b"earlier codes\n"
    assert (tmp_path / "m.skops").read_bytes() == b"earlier model"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["codes.csv", "m.skops",
                                                                 "wine.csv"]


def test_a_signal_while_renaming_lets_every_output_be_written(capsys, table, tmp_path,
                                                             monkeypatch):
    (tmp_path / "codes.csv").write_bytes(b"earlier codes\n")
    (tmp_path / "m.skops").write_bytes(b"earlier model")
    replace = os.replace
    calls = []

    def interrupted_replace(source, destination):
        if not calls:
            os.kill(os.getpid(), signal.SIGINT)
        calls.append(destination)
        replace(source, destination)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    status, _, err = run(capsys, "reduce", table, "-o", tmp_path / "codes.csv", "--keep", "id",
                         "--save", tmp_path / "m.skops", "--quiet", *FAST)
    assert status == 0, err
    assert len(calls) == 2 and "SIGINT came after the outputs were complete" in err
    assert pd.read_csv(tmp_path / "codes.csv").shape == (178, 3)
    assert persistence.load(tmp_path / "m.skops").n_features_in_ == 13
    assert sorted(path.name for path in tmp_path.iterdir()) == ["codes.csv", "m.skops",
                                                                 "wine.csv"]
