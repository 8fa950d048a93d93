"""The paper's two findings on MiniLM: which projection, and how low-rank the posterior over the cores is.

    python benchmarks/ablations.py                                   # the whole grid (many hours on 2 CPU cores)
    python benchmarks/ablations.py --part projections --ranks 8 --seeds 0
    python benchmarks/ablations.py --part cov_rank --tasks sst2
    python benchmarks/ablations.py --table-only                      # rewrite docs/findings.md from the JSON

Two parts, each a grid of independent cells:

* ``projections``: ``svd``, ``whitened_svd``, ``dct``, ``random`` and ``svd+dct:0.5`` x rank {2, 4, 8, 16}
  x {Laplace (full GGN, GLM predictive: the authors' L-LoRA-XS), the default VI (MC predictive)} x task x seed.
* ``cov_rank``: VI with ``covariance="diag"``, low-rank + diagonal with k in {1, 2, 4, 8, 16}, ``"full"``,
  and SWAG, at ``projection="svd"``, rank 8, per task x seed (MC predictive, 16 draws).

Every cell records accuracy, ECE (15 bins), NLL, fit seconds, the dimension D of theta and the
eigenvalue spectrum of the posterior covariance (effective rank, share of the variance in the top
1/4/16 directions). Cells accumulate in ``benchmarks/results/ablations.json``: a run with the same
protocol skips the cells already there, so the grid can be filled in several runs (``--fresh``
starts over). The tables and the spectrum figure in docs/findings.md are rewritten after every cell,
between their markers; the rest of the page is left alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.metrics import expected_calibration_error, negative_log_likelihood

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import write_block  # one marked-block page update for every benchmark
from quality import (  # the quality grid's data and files
    DEFAULT_GLUE,
    by_length,
    cap,
    device_name,
    load_task,
    stored_results,
    write_json_atomic,
)

ROOT = Path(__file__).resolve().parents[1]
PROJECTIONS = ("svd", "whitened_svd", "dct", "random", "svd+dct:0.5")
RANKS = (2, 4, 8, 16)
METHODS = {
    "laplace": dict(posterior="laplace", laplace_structure="full", predictive="glm"),
    "vi": dict(posterior="vi", predictive="mc"),  # MC, so that every cell of the grid predicts alike
}
COVARIANCES = {
    "diag": dict(posterior="vi", covariance="diag", predictive="mc"),
    **{
        f"lowrank k={k}": dict(posterior="vi", covariance="lowrank", cov_rank=k, predictive="mc")
        for k in (1, 2, 4, 8, 16)
    },
    "full": dict(posterior="vi", covariance="full", predictive="mc"),
    "swag": dict(posterior="swag", predictive="mc"),
}
PROTOCOL = ("n_train", "epochs", "n_test", "max_length", "n_samples")
TABLE_START, TABLE_END = "<!-- ablations-projections:start -->", "<!-- ablations-projections:end -->"
COV_START, COV_END = "<!-- ablations-cov-rank:start -->", "<!-- ablations-cov-rank:end -->"
SPEC_START, SPEC_END = "<!-- ablations-spectrum:start -->", "<!-- ablations-spectrum:end -->"
FIGURE = "findings_spectrum.png"


def off_bulk(lam: np.ndarray, factor: float = 2.0) -> int:
    """Eigenvalues more than ``factor`` away from the median one: the directions a low-rank term must carry.

    ``Sigma = s I + (rank-k term)`` has at most ``k`` of them. A Laplace posterior
    ``(G + delta I)^{-1}`` is the prior's ``1/delta`` in every direction the data do
    not constrain, so its effective rank is near ``D`` even when only a few
    directions differ from the prior: this count shows that structure.
    """
    lam = np.asarray(lam, dtype=np.float64)
    med = np.median(lam)
    if med <= 0:
        return int(np.count_nonzero(lam > 0))
    return int(np.count_nonzero((lam > factor * med) | (lam < med / factor)))


def spectrum_summary(lam: np.ndarray) -> dict:
    """Entropy effective rank, the share of ``sum(lambda)`` in the top 1, 4 and 16 directions, and
    the number of directions off the bulk (:func:`off_bulk`)."""
    from subspace_bayes.posteriors import entropy_effective_rank

    lam = np.sort(np.clip(np.asarray(lam, dtype=np.float64), 0.0, None))[::-1]
    total = lam.sum()
    shares = {f"top{k}": float(lam[:k].sum() / total) if total > 0 else 0.0 for k in (1, 4, 16)}
    return {"effective_rank": float(entropy_effective_rank(lam)), **shares, "off_bulk": off_bulk(lam)}


def run_cell(params: dict, data: tuple, args) -> dict:
    """Fit one configuration and measure it on the test split."""
    X, y, X_test, y_test = data
    clf = BayesianSubspaceClassifier(
        max_epochs=args.epochs,
        max_length=args.max_length,
        n_samples=args.n_samples,
        bucket_by_length=True,
        bayesian_head=False,  # the head as in the stored cells, whatever the estimator's default
        verbose=0,
        **params,
    )
    t0 = time.perf_counter()
    clf.fit(X, y)
    seconds = time.perf_counter() - t0
    p = clf.predict_proba(X_test)
    y_enc = np.searchsorted(clf.classes_, y_test)
    lam = clf.posterior_spectrum()
    record = {
        "accuracy": float(np.mean(p.argmax(1) == y_enc)),
        "ece": expected_calibration_error(y_enc, p),
        "nll": negative_log_likelihood(y_enc, p),
        "fit_seconds": seconds,
        "device": device_name(),
        "D": int(lam.size),
        **spectrum_summary(lam),
    }
    if lam.size <= 1024:  # keep the figure's spectra; larger ones only as summaries
        record["spectrum"] = [float(v) for v in lam]
    return record


def cells(args):
    """``(key, params)`` of every cell asked for, seed-major, the default rank first."""
    ranks = sorted(args.ranks, key=lambda r: (r != 8, r))
    for seed in args.seeds:
        for task in args.tasks:
            if "projections" in args.part:
                for rank in ranks:
                    for projection in args.projections:
                        for method, kw in METHODS.items():
                            key = f"projections|{task}|{seed}|{projection}|{rank}|{method}"
                            yield key, task, seed, dict(kw, projection=projection, rank=rank, random_state=seed)
            if "cov_rank" in args.part:
                for name, kw in COVARIANCES.items():
                    yield f"cov_rank|{task}|{seed}|{name}", task, seed, dict(kw, rank=8, random_state=seed)


def _fmt(values: list[float]) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.3f} ± {v.std():.3f}" if v.size > 1 else f"{v.mean():.3f}"


def _group(results: dict, part: str) -> dict:
    """``{(task, rest of the key): [records over seeds]}`` for one part."""
    out: dict = {}
    for key, record in results.items():
        kind, task, _seed, *rest = key.split("|")
        if kind == part:
            out.setdefault((task, *rest), []).append(record)
    return out


def projection_table(results: dict) -> str:
    """One table per task: rows projection x rank, Laplace and VI side by side (mean ± std over seeds).

    Fit seconds stay in the JSON: the cells share the CPU with other work, so they are not comparable.
    """
    groups, lines = _group(results, "projections"), []
    for task in dict.fromkeys(k[0] for k in groups):
        lines += [
            f"### {task}",
            "",
            "| projection | rank | D | seeds | Laplace acc | Laplace ECE | Laplace NLL | VI acc | VI ECE | VI NLL |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for rank in RANKS:
            for projection in PROJECTIONS:
                lap, vi = (
                    groups.get((task, projection, str(rank), "laplace")),
                    groups.get((task, projection, str(rank), "vi")),
                )
                if not lap and not vi:
                    continue
                cols = [projection, str(rank), str((lap or vi)[0]["D"]), str(max(len(lap or []), len(vi or [])))]
                for recs in (lap, vi):
                    cols += [_fmt([r[m] for r in recs]) if recs else "–" for m in ("accuracy", "ece", "nll")]
                lines.append("| " + " | ".join(cols) + " |")
        lines.append("")
    return "\n".join(lines)


def cov_rank_table(results: dict) -> str:
    """VI covariance structures (and SWAG) against VI full: deltas and the 0.005 verdict."""
    groups, lines = _group(results, "cov_rank"), []
    for task in dict.fromkeys(k[0] for k in groups):
        full = groups.get((task, "full"))
        lines += [
            f"### {task}",
            "",
            "| covariance | seeds | accuracy | ECE | NLL | ECE − full | NLL − full | within 0.005 of full "
            "| eff. rank | top-1 / 4 / 16 share |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name in COVARIANCES:
            recs = groups.get((task, name))
            if not recs:
                continue
            cols = [name, str(len(recs))] + [_fmt([r[m] for r in recs]) for m in ("accuracy", "ece", "nll")]
            if full and name != "full":
                d_ece = np.mean([r["ece"] for r in recs]) - np.mean([r["ece"] for r in full])
                d_nll = np.mean([r["nll"] for r in recs]) - np.mean([r["nll"] for r in full])
                verdict = "yes" if abs(d_ece) <= 0.005 and abs(d_nll) <= 0.005 else "no"
                cols += [f"{d_ece:+.3f}", f"{d_nll:+.3f}", verdict]
            else:
                cols += ["", "", ""]
            shares = " / ".join(f"{np.mean([r[f'top{k}'] for r in recs]):.0%}" for k in (1, 4, 16))
            cols += [f"{np.mean([r['effective_rank'] for r in recs]):.1f}", shares]
            lines.append("| " + " | ".join(cols) + " |")
        lines.append("")
    return "\n".join(lines)


def spectrum_table(results: dict) -> str:
    """Effective rank and top-k shares of the full-covariance posteriors, per projection (rank 8)."""
    lines = [
        "| task | posterior | projection | D | seeds | eff. rank | top-1 share | top-4 share | top-16 share "
        "| directions off the bulk |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = _group(results, "projections")
    for (task, projection, rank, method), recs in groups.items():
        if rank == "8" and method == "laplace":
            lines.append(_spectrum_row(task, "Laplace full", projection, recs))
    for (task, name), recs in _group(results, "cov_rank").items():
        if name in ("full", "swag", "lowrank k=4"):
            label = {"full": "VI full", "swag": "SWAG (low-rank + diag)", "lowrank k=4": "VI lowrank k=4"}[name]
            lines.append(_spectrum_row(task, label, "svd", recs))
    return "\n".join(lines)


def _spectrum_row(task: str, posterior: str, projection: str, recs: list) -> str:
    mean = lambda m: np.mean([r[m] for r in recs])
    bulk = [off_bulk(r["spectrum"]) if "spectrum" in r else r.get("off_bulk") for r in recs]
    bulk = [b for b in bulk if b is not None]
    off = f"{np.mean(bulk):.0f}" if bulk else "–"
    return (
        f"| {task} | {posterior} | {projection} | {recs[0]['D']} | {len(recs)} | {mean('effective_rank'):.1f} "
        f"| {mean('top1'):.0%} | {mean('top4'):.0%} | {mean('top16'):.0%} | {off} |"
    )


def figure(results: dict, path: Path) -> bool:
    """Two panels of seed-0 spectra on the first task: Laplace full per projection, VI/SWAG structures."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from subspace_bayes.plotting import plot_spectrum

    task = next((k.split("|")[1] for k in results), None)
    left = {
        p: results[k]["spectrum"]
        for p in PROJECTIONS
        if (k := f"projections|{task}|0|{p}|8|laplace") in results and "spectrum" in results[k]
    }
    right = {
        n: results[k]["spectrum"]
        for n in ("full", "lowrank k=4", "diag", "swag")
        if (k := f"cov_rank|{task}|0|{n}") in results and "spectrum" in results[k]
    }
    if not left and not right:
        return False
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    for ax, spectra, title in zip(
        fig.subplots(1, 2),
        (left, right),
        (
            f"Laplace full GGN, rank 8, by projection ({task})",
            f"VI covariance structures and SWAG, svd rank 8 ({task})",
        ),
        strict=True,
    ):
        if spectra:
            plot_spectrum({k: np.asarray(v) for k, v in spectra.items()}, ax=ax)
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110)
    return True


def write_page(path: Path, args, results: dict) -> None:
    """Rewrite the three marked blocks of docs/findings.md (and the figure next to it)."""
    protocol = "".join(f" --{k.replace('_', '-')} {getattr(args, k)}" for k in PROTOCOL)
    seeds = lambda part: ", ".join(map(str, sorted({int(k.split("|")[2]) for k in results if k.startswith(part)})))
    header = (
        "Regenerate with `python benchmarks/ablations.py --part {part}{protocol}` (cells already in "
        "`benchmarks/results/ablations.json` are skipped). MiniLM-L6, {n} training examples, {e} epochs, "
        "at most {t} test examples, max_length {m}, length-bucketed batches; ECE with 15 bins; "
        "mean ± std over the seeds run (seeds {s}; a row's own count is in its table)."
    )
    fmt = dict(protocol=protocol, n=args.n_train, e=args.epochs, t=args.n_test, m=args.max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("# Findings\n")
    write_block(
        path,
        f"{TABLE_START}\n{header.format(part='projections', s=seeds('projections'), **fmt)}\n\n"
        f"{projection_table(results)}\n{TABLE_END}",
        TABLE_START,
        TABLE_END,
    )
    write_block(
        path,
        f"{COV_START}\n{header.format(part='cov_rank', s=seeds('cov_rank'), **fmt)}\n\n"
        f"{cov_rank_table(results)}\n{COV_END}",
        COV_START,
        COV_END,
    )
    has_figure = figure(results, path.parent / FIGURE)
    image = f"![Posterior spectra]({FIGURE})\n\n" if has_figure else ""
    write_block(path, f"{SPEC_START}\n{image}{spectrum_table(results)}\n{SPEC_END}", SPEC_START, SPEC_END)


def save(path: Path, protocol: dict, results: dict) -> dict:
    """Write ``results`` merged with the cells another run wrote meanwhile (runs may share the file)."""
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("protocol") == protocol:
            results = {**stored["results"], **results}
    write_json_atomic(path, {"protocol": protocol, "results": results})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", nargs="+", choices=["projections", "cov_rank"], default=["projections", "cov_rank"])
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ranks", nargs="+", type=int, default=list(RANKS))
    parser.add_argument("--projections", nargs="+", default=list(PROJECTIONS))
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--n-samples", type=int, default=16)
    parser.add_argument("--glue-dir", type=Path, default=DEFAULT_GLUE)
    parser.add_argument("--fresh", action="store_true", help="ignore cells already in the JSON file")
    parser.add_argument("--table-only", action="store_true", help="rewrite the page from the JSON file")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "ablations.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "findings.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Some inputs are longer than max_length")
    protocol = {k: getattr(args, k) for k in PROTOCOL}
    results = stored_results(args.output, protocol, args.fresh)
    if args.table_only:
        write_page(args.markdown, args, results)
        return
    data: dict = {}
    for key, task, seed, params in cells(args):
        if key in results:
            continue
        if (task, seed) not in data:
            X, y, _, _, X_test, y_test = load_task(task, args.glue_dir, args.n_train, seed)
            data[(task, seed)] = (X, y, *by_length(*cap(X_test, y_test, args.n_test, seed)))
        t0 = time.perf_counter()
        results[key] = run_cell(params, data[(task, seed)], args)
        r = results[key]
        print(
            f"[ablations] {key}: acc {r['accuracy']:.3f} ece {r['ece']:.3f} nll {r['nll']:.3f} "
            f"eff.rank {r['effective_rank']:.1f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        results = save(args.output, protocol, results)
        write_page(args.markdown, args, results)


if __name__ == "__main__":
    main()
