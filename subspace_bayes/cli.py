"""Command line: ``subspace-bayes demo | fit | evaluate | predict``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .options import Posterior

__all__ = ["main"]

#: Estimator parameters that ``fit`` sets through flags of its own.
_FIT_FLAGS = {
    "backbone": "--backbone",
    "posterior": "--posterior",
    "max_epochs": "--max-epochs",
    "random_state": "--random-state",
}


class CommandError(ValueError):
    """A mistake on the command line, reported in one line without a traceback."""


def _parse_params(text: str | None, known: set[str]) -> dict:
    """``--params`` as a dict of estimator parameters, or a :class:`CommandError` that says what is wrong."""
    if not text:
        return {}
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--params is not valid JSON ({exc.msg} at character {exc.pos}): {text}") from None
    if not isinstance(params, dict):
        raise CommandError(f"--params must be a JSON object such as '{{\"rank\": 4}}'; got {text}")
    clash = sorted(set(params) & set(_FIT_FLAGS))
    if clash:
        flags = ", ".join(_FIT_FLAGS[k] for k in clash)
        raise CommandError(f"--params sets {clash}, which have flags of their own: use {flags}")
    unknown = sorted(k for k in params if k not in known and "__" not in k)
    if unknown:
        from ._validation import did_you_mean

        hint = "; ".join(f"{k!r}{did_you_mean(k, sorted(known))}" for k in unknown)
        raise CommandError(f"--params has unknown estimator parameters: {hint}")
    return params


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, format_table, run_demo

    if not args.quiet:  # the library's progress messages go through logging; the command shows them
        logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    cfg = DemoConfig.quick() if args.quick else DemoConfig()
    for name in ("n_train", "max_epochs", "n_samples", "rank", "backbone", "random_state"):
        if getattr(args, name) is not None:
            setattr(cfg, name, getattr(args, name))
    rows = run_demo(args.output, cfg, verbose=0 if args.quiet else 1)
    print(format_table(rows))
    print(f"\nWrote {args.output}/results.md, results.json, reliability.png, uncertainty.png, model/ (with its card)")
    return 0


def _load_data(args: argparse.Namespace, labels: bool = True) -> tuple[list, object]:
    """The data file's texts (and labels), or a :class:`CommandError` that names the mistake."""
    from .datasets import load_tsv

    try:
        return load_tsv(args.data, args.text_column, args.label_column if labels else None, args.pair_column)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def _load_model(path: str):
    """A saved model: an adapter folder (``save_adapter``) or a joblib file (a pickle: trusted files only)."""
    from pathlib import Path

    source = Path(path)
    if source.is_dir():
        from .estimator import load_adapter

        return load_adapter(source, verbose=0)
    if not source.is_file():
        raise CommandError(f"No such model: {path} (a .joblib file written by `fit`, or a save_adapter folder)")
    import joblib

    try:
        model = joblib.load(source)
    except Exception as exc:  # not a joblib file, truncated, written by another library
        raise CommandError(
            f"{path} is not a model saved by `subspace-bayes fit` ({type(exc).__name__}: {exc})"
        ) from None
    if not hasattr(model, "predict_uncertainty"):
        raise CommandError(f"{path} holds a {type(model).__name__}, not a BayesianSubspaceClassifier")
    return model


def _fit(args: argparse.Namespace) -> int:
    import joblib

    from .estimator import BayesianSubspaceClassifier

    params = _parse_params(args.params, set(BayesianSubspaceClassifier().get_params(deep=False)))
    X, y = _load_data(args)
    clf = BayesianSubspaceClassifier(
        backbone=args.backbone,
        posterior=args.posterior,
        max_epochs=args.max_epochs,
        random_state=args.random_state,
        **params,
    )
    clf.fit(X, y)
    joblib.dump(clf, args.model)
    print(f"Fitted on {len(y)} examples; saved to {args.model}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .metrics import brier_score, expected_calibration_error, negative_log_likelihood

    # joblib files are pickles: load only files you trust (see the README).
    clf = _load_model(args.model)
    X, y = _load_data(args)
    proba = clf.predict_proba(X)
    labels = clf.classes_
    y = np.asarray(y).astype(labels.dtype)
    result = {
        "n": len(y),
        "accuracy": float(np.mean(labels[proba.argmax(1)] == y)),
        "ece": expected_calibration_error(y, proba, labels=labels),
        "nll": negative_log_likelihood(y, proba, labels=labels),
        "brier": brier_score(y, proba, labels=labels),
    }
    print(json.dumps(result, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    import pandas as pd

    clf = _load_model(args.model)
    X, _ = _load_data(args, labels=False)
    try:
        labels, proba, unc = clf.predict(X, return_proba=True, return_uncertainty=True)
    except ValueError as exc:  # e.g. single texts for a model fitted on sentence pairs
        raise CommandError(str(exc)) from None
    table = pd.DataFrame({args.text_column: [x[0] if isinstance(x, tuple) else x for x in X]})
    if args.pair_column:
        table[args.pair_column] = [x[1] for x in X]
    table["label"] = labels
    for j, c in enumerate(clf.classes_):
        table[f"proba_{c}"] = proba[:, j]
    for key, values in unc.items():
        table[key] = values
    if args.output in (None, "-"):
        table.to_csv(sys.stdout, sep="\t", index=False)
        return 0
    sep = "," if args.output.endswith(".csv") else "\t"
    table.to_csv(args.output, sep=sep, index=False)
    print(f"Wrote {len(table)} predictions to {args.output} (columns: {', '.join(table.columns)})", file=sys.stderr)
    return 0


def _data_args(p: argparse.ArgumentParser, labels: bool = True) -> None:
    p.add_argument("data", help="TSV or CSV file with a header row (.csv: comma-separated; else tab-separated)")
    p.add_argument("--text-column", required=True, help="column with the (first) text of each example")
    p.add_argument("--pair-column", default=None, help="column with the second text of sentence-pair tasks")
    if labels:
        p.add_argument("--label-column", required=True, help="column with the class labels")
    p.add_argument(
        "--model", required=True, help="the saved model: a .joblib file written by `fit`, or a save_adapter folder"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="subspace-bayes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="compare MAP, temperature scaling and VI on bundled SST-2")
    d.add_argument("--quick", action="store_true", help="about 2 minutes on 2 CPU cores")
    d.add_argument("--output", default="demo-output", help="folder for the table and figures")
    from .demo import DemoConfig

    n_train = f"training sentences (default {DemoConfig().n_train}; --quick: {DemoConfig.quick().n_train})"
    d.add_argument("--n-train", dest="n_train", type=int, help=n_train)
    d.add_argument("--max-epochs", dest="max_epochs", type=int, help="training epochs of every model")
    d.add_argument("--n-samples", dest="n_samples", type=int, help="posterior draws per prediction")
    d.add_argument("--rank", type=int, help="size r of each r x r core")
    d.add_argument("--backbone", help="backbone alias, folder or hub id (default: the bundled minilm)")
    d.add_argument("--random-state", dest="random_state", type=int, help="seed of data sampling and training")
    d.add_argument("--quiet", action="store_true", help="no progress bars or log lines, only the table")
    d.set_defaults(func=_demo)
    f = sub.add_parser("fit", help="fit on your own TSV/CSV file and save the model")
    _data_args(f)
    f.add_argument("--backbone", default="minilm", help="backbone alias, folder or hub id (default: minilm)")
    f.add_argument(
        "--posterior", default="vi", choices=[p.value for p in Posterior], help="inference method (default: vi)"
    )
    f.add_argument("--max-epochs", dest="max_epochs", type=int, default=10, help="training epochs (default: 10)")
    f.add_argument("--random-state", dest="random_state", type=int, default=0, help="seed (default: 0)")
    f.add_argument("--params", help="other estimator parameters as JSON, e.g. '{\"rank\": 4}'")
    f.set_defaults(func=_fit)
    e = sub.add_parser("evaluate", help="accuracy, ECE, NLL and Brier of a saved model on a labelled file")
    _data_args(e)
    e.set_defaults(func=_evaluate)
    p = sub.add_parser(
        "predict", help="labels, class probabilities and uncertainty scores of a saved model for a file's texts"
    )
    _data_args(p, labels=False)
    p.add_argument(
        "--output",
        default=None,
        help="file to write (.csv: comma-separated, else tab-separated); default: a TSV table on standard output",
    )
    p.set_defaults(func=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as exc:
        print(f"subspace-bayes {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
