"""Command line: ``subspace-bayes demo | fit | evaluate``."""

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
        import difflib

        hints = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
        hint = "; ".join(f"{k!r} (did you mean {m[0]!r}?)" if m else repr(k) for k, m in hints.items())
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
    print(f"\nWrote {args.output}/results.md, results.json, reliability.png, uncertainty.png")
    return 0


def _fit(args: argparse.Namespace) -> int:
    import joblib

    from .datasets import load_tsv
    from .estimator import BayesianSubspaceClassifier

    params = _parse_params(args.params, set(BayesianSubspaceClassifier().get_params(deep=False)))
    X, y = load_tsv(args.data, args.text_column, args.label_column, args.pair_column)
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
    import joblib
    import numpy as np

    from .datasets import load_tsv
    from .metrics import brier_score, expected_calibration_error, negative_log_likelihood

    # joblib files are pickles: load only files you trust (see the README).
    clf = joblib.load(args.model)
    X, y = load_tsv(args.data, args.text_column, args.label_column, args.pair_column)
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


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="TSV or CSV file with a header row")
    p.add_argument("--text-column", required=True)
    p.add_argument("--pair-column", default=None, help="second text of sentence-pair tasks")
    p.add_argument("--label-column", required=True)
    p.add_argument("--model", required=True, help="path of the saved model (.joblib)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="subspace-bayes", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="compare MAP, temperature scaling and VI on bundled SST-2")
    d.add_argument("--quick", action="store_true", help="about 2 minutes on 2 CPU cores")
    d.add_argument("--output", default="demo-output", help="folder for the table and figures")
    d.add_argument("--n-train", dest="n_train", type=int)
    d.add_argument("--max-epochs", dest="max_epochs", type=int)
    d.add_argument("--n-samples", dest="n_samples", type=int)
    d.add_argument("--rank", type=int)
    d.add_argument("--backbone")
    d.add_argument("--random-state", dest="random_state", type=int)
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=_demo)
    f = sub.add_parser("fit", help="fit on your own TSV/CSV file and save the model")
    _data_args(f)
    f.add_argument("--backbone", default="minilm")
    f.add_argument("--posterior", default="vi", choices=[p.value for p in Posterior])
    f.add_argument("--max-epochs", dest="max_epochs", type=int, default=10)
    f.add_argument("--random-state", dest="random_state", type=int, default=0)
    f.add_argument("--params", help="other estimator parameters as JSON, e.g. '{\"rank\": 4}'")
    f.set_defaults(func=_fit)
    e = sub.add_parser("evaluate", help="accuracy, ECE, NLL and Brier of a saved model on a labelled file")
    _data_args(e)
    e.set_defaults(func=_evaluate)
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
