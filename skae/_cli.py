"""The ``skae`` command: autoencoders on tables (CSV, TSV, Parquet) from the shell.

Every error a user can act on (a missing file, a column that is not numeric,
NaN, a model that does not fit the table) is one line on stderr, ``skae:
error: ...``, and exit status 2. Paths are checked first, before anything
heavy (torch, scikit-learn, pandas, skops) is imported or trained. Outputs are
written to hidden temporary files in their destination's folder and renamed
into place together once all are complete, so a failure or an interrupt
(Ctrl-C, SIGTERM, SIGHUP: exit status 128 + the signal's number) leaves every
earlier file as it was. Standard output stays empty: progress, warnings and
the closing summary go to stderr.
"""

import argparse
import contextlib
import os
import secrets
import signal
import sys
import threading
import warnings
from pathlib import Path

EXIT_USAGE = 2
INSTALL_HINT = 'pip install "skae[cli]"'

#: ``skae reduce --model`` choices and the skae estimator each one fits (the
#: one mapping: the parser's help and the model built read it).
MODELS = {
    "ae": "AutoencoderTransformer",
    "dae": "DenoisingAutoencoder",
    "vae": "VariationalAutoencoder",
    "conv": "ConvolutionalAutoencoder",
}

# Table formats by file extension; a compression suffix may follow csv/tsv.
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")
_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}

EXAMPLES = {
    "reduce": [
        "skae reduce cells.csv -o codes.csv --keep cell_id --n-components 8 --save model.skops",
        "skae reduce table.parquet -o codes.tsv --model vae --hidden 128,64 --max-iter 100",
    ],
    "transform": ["skae transform --model model.skops new_cells.csv -o new_codes.csv "
                  "--keep cell_id"],
    "reconstruct": ["skae reconstruct --model model.skops cells.csv -o rebuilt.csv"],
    "score": ["skae score --model model.skops cells.csv -o worst.csv --keep cell_id --top 20"],
    "sample": ["skae sample --model vae.skops -n 100 -o synthetic.csv --random-state 0"],
}

FORMATS_NOTE = """\
Tables are read and written by extension: .csv, .tsv (or .tab), each optionally
compressed (.gz, .bz2, .xz, .zip, .zst), and .parquet (needs pyarrow). Models
are saved with skops; --model loads only the types skae writes, running no code
from the file: pip install "skae[cli]". Errors are one line on stderr
("skae: error: ...") with exit status 2; Ctrl-C exits with 130 (SIGTERM 143),
leaving every earlier file as it was."""


def _epilog(*commands):
    examples = [line for command in commands for line in EXAMPLES[command]]
    return "examples:\n" + "".join(f"  {line}\n" for line in examples) + "\n" + FORMATS_NOTE


class UsageError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _quoted(names, limit=10):
    names = [repr(str(name)) for name in names]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


# ---------------------------------------------------------------------- #
# Signals.

class _Signals:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP as an abort that the command can hold off.

    The first signal raises :class:`KeyboardInterrupt` wherever the command
    is, unless it is inside :meth:`held`: the renames that commit the
    outputs, and the removal of temporary files, which must not be cut in
    two. Later signals are ignored, since the command is already on its way
    out (that takes milliseconds), and cleaning up must not be cut short.

    With a handler of its own in place of Python's default one, the training
    engine no longer defers Ctrl-C to keep the weights trained so far (the
    library's behaviour, for notebooks): in the command, Ctrl-C aborts.
    """

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self):
        self.received = None
        self._holding = 0

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
            if not self._holding:
                raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self):
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1

    @contextlib.contextmanager
    def installed(self):
        global _signals
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                number = getattr(signal, name, None)  # no SIGHUP on Windows
                if number is not None:
                    previous[number] = signal.signal(number, self._handle)
        _signals = self
        try:
            yield self
        finally:
            _signals = None
            for number, handler in previous.items():
                signal.signal(number, signal.SIG_DFL if handler is None else handler)


_signals = None


def _held():
    """Hold off an abort while the block runs (when ``main`` handles signals)."""
    return contextlib.nullcontext() if _signals is None else _signals.held()


# ---------------------------------------------------------------------- #
# Paths, checked before anything is imported, read or trained.

def _table_format(path, role):
    name = Path(path).name.lower()
    compressed = name.endswith(_COMPRESSION)
    kind = _FORMATS.get(Path(name.rsplit(".", 1)[0] if compressed else name).suffix)
    if kind is None or (compressed and kind == "parquet"):
        raise UsageError(
            f"{role} {path}: unknown table format; use a name ending in .csv, .tsv or "
            ".parquet (csv and tsv may be compressed: .csv.gz, ...)."
        )
    return kind


def check_input(path, role="INPUT"):
    """Refuse an input that does not exist."""
    if not Path(path).is_file():
        what = "is a folder" if Path(path).is_dir() else "no such file"
        raise UsageError(f"{role} {path}: {what}.")


def check_destination(path, role="OUTPUT"):
    """Refuse an output whose folder does not exist, or that is a folder."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"{role} {path}: cannot write it, folder {path.parent} does not "
                         "exist.")
    if path.is_dir():
        raise UsageError(f"{role} {path}: cannot write it, it is a folder.")
    return path


def check_table_destination(path):
    _table_format(path, "OUTPUT")
    return check_destination(path)


def check_model_destination(path):
    if Path(path).suffix != ".skops":
        raise UsageError(f"--save {path}: name the model file with the .skops extension.")
    return check_destination(path, "--save")


def check_figure_destination(path):
    if Path(path).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise UsageError(f"--plot {path}: name the figure .png, .pdf or .svg.")
    return check_destination(path, "--plot")


def check_keep(keep, output_columns, what):
    """Refuse ``--keep`` columns named twice, or named like a column the command writes."""
    twice = sorted({name for name in keep if keep.count(name) > 1})
    if twice:
        raise UsageError(f"--keep {_quoted(twice)}: named more than once.")
    clash = [name for name in keep if name in set(output_columns)]
    if clash:
        raise UsageError(f"--keep {_quoted(clash)}: the output has a column of that name "
                         f"({what}); rename the column in the input first.")


def _check_paths(args):
    """Every path and name of ``args`` that can be checked without reading a file."""
    command = args.command
    if command != "sample":
        _table_format(args.input, "INPUT")
        check_input(args.input)
    if command != "reduce":
        check_input(args.model, "--model")
    check_table_destination(args.output)
    if command == "reduce":
        if args.save:
            check_model_destination(args.save)
        if args.plot:
            check_figure_destination(args.plot)
        codes = [f"{MODELS[args.model].lower()}{i}" for i in range(args.n_components)]
        check_keep(args.keep, codes, "the codes")
    elif command == "score":
        check_keep(args.keep, ["reconstruction_error", *(["row"] if args.top else [])],
                   "the errors" if args.top is None else "the errors and row numbers")
    elif command != "sample":
        check_keep(args.keep, [], "")
    destinations = [Path(path).resolve() for path in
                    (args.output, getattr(args, "save", None), getattr(args, "plot", None))
                    if path]
    if len(set(destinations)) < len(destinations):
        raise UsageError("the same file is named for two outputs.")


# ---------------------------------------------------------------------- #
# Tables.

def read_table(path):
    import pandas as pd

    kind = _table_format(path, "INPUT")
    check_input(path)
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if kind == "tsv" else ",")
    except ImportError as error:
        raise UsageError(f"reading {path} needs pyarrow ({_first_line(error)}); "
                         f"{INSTALL_HINT}.") from None
    except pd.errors.EmptyDataError:
        raise UsageError(f"INPUT {path} is empty.") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise UsageError(f"cannot read {path} as {kind}: {_first_line(error)}") from None


class Outputs:
    """Files a command writes, all or none.

    Each is written to a hidden temporary file in its destination's folder
    (``.NAME.RANDOM`` plus the destination's suffixes, from which pandas
    infers compression); only when every one is complete are they renamed
    into place, one after the other, with signals held off so that an
    interrupt cannot leave new codes beside an old model. A failure or an
    interrupt before that removes the temporary files and leaves every
    earlier file as it was.
    """

    def __init__(self):
        self._pending = []

    def add(self, path, write):
        """Plan ``write(temporary_path)`` for ``path``."""
        self._pending.append((check_destination(path), write))

    def add_table(self, path, frame):
        kind = _table_format(path, "OUTPUT")

        def write(temporary):
            if kind == "parquet":
                frame.to_parquet(temporary, index=False)
            else:
                frame.to_csv(temporary, sep="\t" if kind == "tsv" else ",", index=False,
                             compression="infer")

        self.add(path, write)

    def commit(self):
        temporaries = []
        path = None
        try:
            for path, write in self._pending:
                # Named before it exists, so that an interrupt at any point
                # leaves no file the cleanup does not know of.
                temporaries.append(path.with_name(
                    f".{path.name}.{secrets.token_hex(6)}{''.join(path.suffixes[-2:])}"))
                write(temporaries[-1])
            with _held():
                for temporary, (path, _) in zip(list(temporaries), self._pending):
                    os.replace(temporary, path)
                    temporaries.remove(temporary)
        except ImportError as error:
            raise UsageError(f"writing {path} needs pyarrow ({_first_line(error)}); "
                             f"{INSTALL_HINT}.") from None
        except OSError as error:
            raise UsageError(f"cannot write {path}: {_first_line(error)}") from None
        finally:
            with _held():
                for temporary in temporaries:
                    with contextlib.suppress(OSError):
                        os.unlink(temporary)


def split_columns(frame, keep, source):
    """``(features, kept)``: every column not in ``keep`` must be numeric and finite."""
    import numpy as np
    import pandas as pd

    missing = [name for name in keep if name not in frame.columns]
    if missing:
        raise UsageError(f"--keep {_quoted(missing)}: no such column in {source} "
                         f"(columns: {_quoted(frame.columns)}).")
    features = frame.drop(columns=list(keep))
    not_numeric = [name for name in features.columns
                   if not pd.api.types.is_numeric_dtype(features[name])]
    if not_numeric:
        raise UsageError(
            f"column(s) {_quoted(not_numeric)} of {source} are not numeric; name them with "
            "--keep to carry them through to the output, or encode them as numbers first "
            "(e.g. one-hot)."
        )
    if features.shape[1] == 0:
        raise UsageError(f"{source} has no numeric column to fit on.")
    if features.shape[0] == 0:
        raise UsageError(f"{source} has no rows.")
    values = features.to_numpy(dtype=np.float64, na_value=np.nan)
    with_nan = [name for name, bad in zip(features.columns, np.isnan(values).any(axis=0)) if bad]
    if with_nan:
        raise UsageError(f"column(s) {_quoted(with_nan)} of {source} have missing values "
                         "(NaN); fill or drop them first.")
    infinite = [name for name, bad in zip(features.columns, np.isinf(values).any(axis=0)) if bad]
    if infinite:
        raise UsageError(f"column(s) {_quoted(infinite)} of {source} have infinite values.")
    return features.astype(np.float64), frame[list(keep)]


# ---------------------------------------------------------------------- #
# Models.

def _skops():
    try:
        import skops.io
    except ImportError:
        raise UsageError(f"saving and loading models needs skops: {INSTALL_HINT}") from None
    return skops.io


def dump_model(model, path, destination):
    """``skops.io.dump`` that reports what skops cannot represent as one line."""
    try:
        _skops().dump(model, path)
    except Exception as error:  # skops refuses what it cannot represent safely
        raise UsageError(f"cannot save the model to {destination} with skops: "
                         f"{_first_line(error)}") from None


def load_model(path):
    """Load a model saved by ``skae reduce --save``, running no code from the file.

    Only the exact types of :data:`skae.persistence.TRUSTED_TYPES` are
    trusted beyond skops' defaults; a file that names any other type or
    function is refused before anything in it is built.
    """
    from . import persistence

    check_input(path, "--model")
    _skops()
    try:
        foreign = persistence.untrusted_types(path)
    except Exception as error:  # not a zip, no schema, a schema skops cannot parse
        raise UsageError(f"cannot read model {path}: not a skops file "
                         f"({_first_line(error)}).") from None
    if foreign:
        raise UsageError(
            f"refusing to load {path}: it names types that skae does not write "
            f"({', '.join(foreign)}); load it in Python with skops.io.load only if you "
            "trust its source."
        )
    try:
        model = persistence.load(path)
    except Exception as error:  # e.g. a training state this version of skae cannot read
        raise UsageError(f"cannot load model {path}: {_first_line(error)}") from None
    if _autoencoder_of(model) is None:
        raise UsageError(f"{path} holds a {type(model).__name__} object, not a model saved by "
                         "skae reduce --save (a skae autoencoder, or a Pipeline ending in one).")
    return model


def _autoencoder_of(model):
    """The skae autoencoder in ``model`` (itself, or a Pipeline's last step)."""
    from sklearn.pipeline import Pipeline

    from ._base import BaseAutoencoder

    last = model.steps[-1][1] if isinstance(model, Pipeline) and model.steps else model
    return last if isinstance(last, BaseAutoencoder) else None


def _preprocess(model, X):
    """The rows as the autoencoder sees them (after a saved scaler, if any)."""
    from sklearn.pipeline import Pipeline

    return model[:-1].transform(X) if isinstance(model, Pipeline) else X


def model_features(model, frame, keep, source):
    """Select the model's feature columns from ``frame``, by name and in order."""
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        raise UsageError("the model records no column names (it was not saved by "
                         "skae reduce); cannot match it to a table.")
    names = [str(name) for name in names]
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise UsageError(f"{source} lacks column(s) {_quoted(missing)} the model was fitted on "
                         f"(model columns: {_quoted(names)}).")
    overlap = [name for name in keep if name in names]
    if overlap:
        raise UsageError(f"--keep {_quoted(overlap)}: the model uses these columns as features; "
                         "they are not carried through separately.")
    unknown = [name for name in keep if name not in frame.columns]
    if unknown:
        raise UsageError(f"--keep {_quoted(unknown)}: no such column in {source} "
                         f"(columns: {_quoted(frame.columns)}).")
    return split_columns(frame[[*names, *keep]], keep, source)


# ---------------------------------------------------------------------- #
# Subcommands.

def _parse_hidden(text):
    if text.strip().lower() in ("", "none", "()"):
        return ()
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers (e.g. 128,64)") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: layer widths must be positive")
    return sizes


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _build_model(args):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    import skae

    params = dict(n_components=args.n_components, verbose=not args.quiet)
    for option, name in [("hidden", "hidden_layer_sizes"), ("max_iter", "max_iter"),
                         ("device", "device"), ("random_state", "random_state")]:
        if getattr(args, option) is not None:
            params[name] = getattr(args, option)
    estimator = getattr(skae, MODELS[args.model])(**params)
    scaler = {"standard": StandardScaler, "minmax": MinMaxScaler, "none": None}[args.scale]
    return estimator if scaler is None else make_pipeline(scaler(), estimator)


def _codes_frame(model, codes, kept):
    import pandas as pd

    names = [str(name) for name in model.get_feature_names_out()]
    frame = pd.DataFrame(codes, columns=names, index=kept.index)
    return pd.concat([kept, frame], axis=1)


@contextlib.contextmanager
def _estimator_call(quiet):
    """Run the estimators: their progress (stdout) and warnings to stderr, one line each.

    What they reject in the parameters or the data (a ``ValueError``, such as
    scikit-learn's ``InvalidParameterError`` or skae's
    ``TrainingDivergedError``, each naming what to change) becomes a one-line
    error, and the accelerator's out-of-memory error a ``MemoryError``, which
    ``main`` reports in one line too; any other exception is a bug and keeps
    its traceback.
    """
    def show(message, category, filename, lineno, file=None, line=None):
        if category.__name__ == "ConvergenceWarning" or not quiet:
            print(f"skae: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("default")
        warnings.showwarning = show
        try:
            yield
        except ValueError as error:
            raise UsageError(_first_line(error)) from None
        except RuntimeError as error:
            torch = sys.modules.get("torch")
            if torch is not None and isinstance(error, torch.cuda.OutOfMemoryError):
                raise MemoryError(_first_line(error)) from None
            raise


def _summary(args, message):
    if not args.quiet:
        print(f"skae: {message}", file=sys.stderr)


def cmd_reduce(args):
    if args.save:
        _skops()
    draw = _figure_writer(args.plot) if args.plot else None
    frame = read_table(args.input)
    features, kept = split_columns(frame, args.keep, args.input)
    model = _build_model(args)
    with _estimator_call(args.quiet):
        codes = model.fit_transform(features)
    autoencoder = _autoencoder_of(model)
    outputs = Outputs()
    outputs.add_table(args.output, _codes_frame(model, codes, kept))
    if args.save:
        outputs.add(args.save, lambda temporary: dump_model(model, temporary, args.save))
    if draw:
        outputs.add(args.plot, draw(autoencoder, codes))
    outputs.commit()
    _summary(args, f"{type(autoencoder).__name__}: {autoencoder.n_iter_} epochs, final loss "
                   f"{autoencoder.loss_curve_[-1]:.4g}; wrote {codes.shape[0]} rows x "
                   f"{codes.shape[1]} codes to {args.output}"
                   + (f", the model to {args.save}" if args.save else "")
                   + (f", the figure to {args.plot}" if args.plot else ""))


def _figure_writer(path):
    """Check that ``--plot`` can be drawn, before fitting; return what draws it after."""
    suffix = Path(path).suffix.lower()
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install matplotlib") from None

    def draw(autoencoder, codes):
        # A bare Figure draws without a GUI backend or pyplot's global state.
        fig = Figure(figsize=(10, 4), layout="tight")
        curve, scatter = fig.subplots(1, 2)
        curve.plot(range(1, len(autoencoder.loss_curve_) + 1), autoencoder.loss_curve_)
        curve.set_xlabel("epoch")
        curve.set_ylabel("training loss")
        curve.set_title(f"{type(autoencoder).__name__}: training loss", fontsize="medium")
        if codes.shape[1] >= 2:
            scatter.scatter(codes[:, 0], codes[:, 1], s=4, alpha=0.6)
            scatter.set_xlabel("code 0")
            scatter.set_ylabel("code 1")
            scatter.set_title("First two codes of every row", fontsize="medium")
        else:
            scatter.hist(codes[:, 0], bins=50)
            scatter.set_xlabel("code 0")
            scatter.set_title("The code of every row", fontsize="medium")
        return lambda temporary: fig.savefig(temporary, dpi=100, format=suffix[1:])

    return draw


def _load_inputs(args, output_columns=None):
    """The model, then the table's features and kept columns.

    ``output_columns(model)`` names the columns the command writes beside
    the kept ones, which ``--keep`` must not name.
    """
    model = load_model(args.model)
    if output_columns is not None:
        check_keep(args.keep, output_columns(model), "the codes")
    frame = read_table(args.input)
    features, kept = model_features(model, frame, args.keep, args.input)
    return model, features, kept


def _write(args, frame, what):
    outputs = Outputs()
    outputs.add_table(args.output, frame)
    outputs.commit()
    _summary(args, f"wrote {len(frame)} {what} to {args.output}")


def cmd_transform(args):
    model, features, kept = _load_inputs(
        args, lambda model: [str(name) for name in model.get_feature_names_out()])
    with _estimator_call(args.quiet):
        codes = model.transform(features)
    _write(args, _codes_frame(model, codes, kept), f"rows x {codes.shape[1]} codes")


def cmd_reconstruct(args):
    import pandas as pd

    model, features, kept = _load_inputs(args)
    with _estimator_call(args.quiet):
        rebuilt = model.inverse_transform(model.transform(features))
    rebuilt = pd.DataFrame(rebuilt, columns=features.columns, index=features.index)
    _write(args, pd.concat([kept, rebuilt], axis=1), "reconstructed rows")


def cmd_score(args):
    import numpy as np

    model, features, kept = _load_inputs(args)
    autoencoder = _autoencoder_of(model)
    with _estimator_call(args.quiet):
        seen = _preprocess(model, features)  # a DataFrame still, without a scaler
        rebuilt = autoencoder.inverse_transform(autoencoder.transform(seen))
        seen = np.asarray(seen, dtype=np.float64)
    # The mean squared error of each row in the units the autoencoder was
    # trained in (after the saved scaler): higher = more anomalous. For the
    # dense autoencoders it is -score_samples; for a VAE, whose score_samples
    # is an ELBO, it is the error of the reconstruction from the posterior mean.
    error = np.mean((rebuilt - seen) ** 2, axis=1)
    frame = kept.reset_index(drop=True).assign(reconstruction_error=error)
    if args.top is not None:
        order = np.argsort(-error, kind="stable")[:args.top]
        frame = frame.iloc[order]
        frame.insert(0, "row", order)
    _write(args, frame, "rows' reconstruction errors")


def cmd_sample(args):
    import pandas as pd
    from sklearn.pipeline import Pipeline

    model = load_model(args.model)
    autoencoder = _autoencoder_of(model)
    if not hasattr(autoencoder, "sample"):
        raise UsageError(f"{args.model} holds an {type(autoencoder).__name__}, which cannot "
                         "generate rows; sample needs a variational autoencoder "
                         "(skae reduce --model vae).")
    with _estimator_call(args.quiet):
        rows = autoencoder.sample(args.n_samples, random_state=args.random_state)
        if isinstance(model, Pipeline):  # back to the table's units
            rows = model[:-1].inverse_transform(rows)
    names = getattr(model, "feature_names_in_", None)
    columns = None if names is None else [str(name) for name in names]
    _write(args, pd.DataFrame(rows, columns=columns), "sampled rows")


# ---------------------------------------------------------------------- #
# The parser.

class _Parser(argparse.ArgumentParser):
    """Usage errors as one line too, pointing at ``--help``."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"skae: error: {message} (see '{self.prog} --help')\n")


def build_parser():
    parser = _Parser(
        prog="skae",
        description="Autoencoders on tables: fit, reduce, reconstruct, score and sample\n"
                    "the rows of CSV, TSV or Parquet files.",
        epilog=_epilog(*EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"skae {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name, help_text, function):
        command = commands.add_parser(name, help=help_text, description=help_text,
                                      epilog=_epilog(name),
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
        command.set_defaults(function=function)
        return command

    def input_output(command):
        command.add_argument("input", metavar="INPUT", help="table to read (.csv, .tsv, .parquet)")
        command.add_argument("-o", "--output", metavar="OUTPUT", required=True,
                             help="table to write; its extension sets the format")

    def keep(command):
        command.add_argument("--keep", metavar="COLUMN", nargs="+", action="extend", default=[],
                             help="columns carried through to the output unchanged (e.g. an id); "
                                  "not used as features (give INPUT before --keep)")

    def quiet(command):
        command.add_argument("--quiet", action="store_true",
                             help="no progress or summary on stderr")

    reduce = add("reduce", "fit an autoencoder on the numeric columns and write their codes",
                 cmd_reduce)
    input_output(reduce)
    reduce.add_argument("--model", choices=list(MODELS), default="ae",
                        help=", ".join(f"{key}: {name}" for key, name in MODELS.items())
                             + " (default: ae)")
    reduce.add_argument("--n-components", type=_positive_int, default=2, metavar="K",
                        help="code size (default: 2)")
    reduce.add_argument("--hidden", type=_parse_hidden, metavar="SIZES",
                        help="hidden layer widths from the input inwards, e.g. 128,64 "
                             "(default: the estimator's)")
    reduce.add_argument("--max-iter", type=_positive_int, metavar="N",
                        help="maximum number of epochs (default: the estimator's)")
    reduce.add_argument("--device", metavar="D",
                        help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    reduce.add_argument("--scale", choices=["standard", "minmax", "none"], default="standard",
                        help="scale the columns first; the scaler is saved with the model "
                             "(default: standard)")
    keep(reduce)
    reduce.add_argument("--save", metavar="MODEL",
                        help="save the fitted model (with its scaler) to MODEL.skops")
    reduce.add_argument("--plot", metavar="PNG",
                        help="draw the training loss and the first two codes")
    reduce.add_argument("--random-state", type=int, metavar="N",
                        help="seed, for a reproducible fit")
    quiet(reduce)

    for name, help_text, function in [
        ("transform", "write the codes of a table's rows with a saved model", cmd_transform),
        ("reconstruct", "write the rows as a saved model rebuilds them", cmd_reconstruct),
        ("score", "write each row's reconstruction error (higher = more anomalous)", cmd_score),
    ]:
        command = add(name, help_text, function)
        command.add_argument("--model", metavar="MODEL", required=True,
                             help="model saved by skae reduce --save")
        input_output(command)
        keep(command)
        if name == "score":
            command.add_argument("--top", type=_positive_int, metavar="N",
                                 help="keep only the N rows with the largest errors, largest "
                                      "first, with their 0-based row number in INPUT")
        quiet(command)

    sample = add("sample", "generate rows with a saved variational autoencoder", cmd_sample)
    sample.add_argument("--model", metavar="MODEL", required=True,
                        help="model saved by skae reduce --model vae --save")
    sample.add_argument("-n", "--n-samples", type=_positive_int, required=True, metavar="N",
                        help="number of rows to generate")
    sample.add_argument("-o", "--output", metavar="OUTPUT", required=True,
                        help="table to write; its extension sets the format")
    sample.add_argument("--random-state", type=int, metavar="N",
                        help="seed, for reproducible samples")
    quiet(sample)
    return parser


def main(argv=None):
    """Run ``skae ARGV``; return 0, or exit with 2 (a usage error) or 128 + a signal's number.

    Ctrl-C (SIGINT), SIGTERM and SIGHUP abort the command: exit status 130,
    143 or 129, no output written, every earlier file as it was. A signal
    that comes while the finished outputs are being renamed into place (an
    uninterruptible instant) lets them all be written; the status is then 0.
    """
    with _Signals().installed() as signals:
        parser = build_parser()
        args = parser.parse_args(argv)
        status, message = 0, ""
        try:
            _check_paths(args)
            args.function(args)
        except UsageError as error:
            status, message = EXIT_USAGE, f"skae: error: {error}\n"
        except KeyboardInterrupt:
            number = signals.received or signal.SIGINT
            status = 128 + number
            message = (f"skae: interrupted ({signal.Signals(number).name}); no output was "
                       "written, earlier files are as they were.\n")
        except MemoryError as error:
            detail = str(error).strip().splitlines()
            status = EXIT_USAGE
            message = "skae: error: out of memory" + (f": {detail[0]}\n" if detail else ".\n")
        with signals.held():  # the outcome is settled: a signal now changes nothing
            if status == 0 and signals.received is not None:
                message = (f"skae: {signal.Signals(signals.received).name} came after the "
                           "outputs were complete; they were all written.\n")
            if status != 0:
                parser.exit(status, message)
            sys.stderr.write(message)
    return 0
