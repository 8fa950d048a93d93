"""Padding in training batches: random batches vs length buckets (``bucket_by_length=True``).

python benchmarks/padding.py            # 512 SST-2 sentences, 2 epochs per fit, 2 fits each way (a few minutes)
python benchmarks/padding.py --quick
python benchmarks/padding.py --decide --worker 0/2 &   # the quality side of the default (issue 31), 5 seeds
python benchmarks/padding.py --decide --worker 1/2 &
python benchmarks/padding.py --decide --table-only

``--decide`` runs the evidence protocol of benchmarks/vi_convergence.py (SST-2, 400 training phrases
per seed, dev = 500 held-out phrases of the bundled sample, test = GLUE's validation set; five seeds)
for the default estimator with length buckets. The rows with random batches (the estimator's
defaults before this decision), MAP and the label prior are that protocol's stored cells
(benchmarks/results/vi_convergence/); ``--check-reuse`` refits one of them with today's code to
show that it reproduces. The rule, fixed before the runs: buckets become the default when no dev
difference in NLL, ECE or accuracy is worse with a 95% interval that excludes zero.

Measures, on the bundled MiniLM tokenizer and SST-2 sample, the share of padded tokens over one
epoch of training batches and the fit seconds of the default VI estimator with and without
bucketing, run alternately in one process (random, buckets, buckets, random) so that drift in the
machine's speed hits both. Writes a block into docs/cost.md and JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.backbones import load_tokenizer
from subspace_bayes.datasets import load_sst2
from subspace_bayes.text import LengthBucketBatchSampler, TextCollator, coerce_texts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import defaults_label, write_block  # the defaults label and page update shared by the benchmarks

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- padding:start -->", "<!-- padding:end -->"
DECISION = ROOT / "benchmarks" / "results" / "padding_decision"
DECISION_START, DECISION_END = "<!-- padding-decision:start -->", "<!-- padding-decision:end -->"
#: The stored cells of benchmarks/vi_convergence.py reused as rows here: row here -> row there.
REUSED = {"random batches": "after: σ_p = 0.3, σ_h = 1, β = 0.3", "MAP": "MAP", "label prior": "label prior"}
BUCKETS = "length buckets"


def padded_fraction(token_lengths: np.ndarray, batches: list[list[int]]) -> float:
    """Padded tokens / all tokens of the padded batches (each batch padded to its longest example)."""
    padded = sum(len(b) * token_lengths[b].max() for b in batches)
    return float(1.0 - sum(token_lengths[b].sum() for b in batches) / padded)


def epoch_padding(X: list[str], batch_size: int, max_length: int, seeds: range) -> dict[str, float]:
    """Mean padded share over ``seeds``: random batches, buckets by token count (the estimator's) and by characters."""
    inputs = coerce_texts(X)
    tokens = TextCollator(load_tokenizer("minilm"), max_length).lengths(inputs)
    shares = {"random": [], "buckets": [], "buckets_chars": []}
    for seed in seeds:
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed)).tolist()
        cut = [order[i : i + batch_size] for i in range(0, len(X), batch_size)]
        shares["random"].append(padded_fraction(tokens, cut))
        for key, lengths in (("buckets", tokens), ("buckets_chars", inputs.lengths())):
            sampler = LengthBucketBatchSampler(lengths, batch_size, torch.Generator().manual_seed(seed))
            shares[key].append(padded_fraction(tokens, list(sampler)))
    return {key: float(np.mean(v)) for key, v in shares.items()}


def speed_block(result: dict) -> str:
    """The docs block of the padding and speed measurement, from its JSON."""
    padding, times = result["padding"], result["fit_seconds"]
    mark = lambda bucket: ", the default" if result["default_buckets"] == bucket else ""
    random_s, bucket_s = np.mean(times["random"]), np.mean(times["buckets"])
    return "\n".join([
        START,
        "## Padding: random training batches vs length buckets",
        "",
        f"`python benchmarks/padding.py{' --quick' if result['quick'] else ''}`: MiniLM tokenizer, batch 32, "
        f"max_length 128. Padded share of the tokens over one epoch of 1,000 SST-2 sentences (mean of 5 shuffles), "
        f"and fit seconds of the default VI on {result['n']} sentences x {result['epochs']} epochs, "
        f"{result['threads']} threads, run random, buckets, buckets, random in one process. Estimator defaults "
        f"otherwise: {result['defaults']}.",
        "",
        "| batches | padded tokens | fit seconds (2 runs) |",
        "|---|---|---|",
        f"| random (`bucket_by_length=False`{mark(False)}) | {padding['random']:.1%} | "
        f"{', '.join(f'{t:.1f}' for t in times['random'])} |",
        f"| length buckets (`bucket_by_length=True`{mark(True)}) | {padding['buckets']:.1%} | "
        f"{', '.join(f'{t:.1f}' for t in times['buckets'])} |",
        *(
            [f"| length buckets sorted by characters (the estimator before 1 December 2026) | "
             f"{padding['buckets_chars']:.1%} | – |"]
            if "buckets_chars" in padding else []
        ),
        "",
        f"Fit speed-up with buckets: {random_s / bucket_s:.2f}x (mean of the two runs each).",
        END,
    ])  # fmt: skip


def fit_seconds(X, y, epochs: int, bucket: bool) -> float:
    clf = BayesianSubspaceClassifier(max_epochs=epochs, bucket_by_length=bucket, verbose=0, random_state=0)
    t0 = time.perf_counter()
    clf.fit(X, y)
    return time.perf_counter() - t0


def decision_cells() -> dict:
    """(row, seed) -> cell: the bucket fits stored here, the reused rows from vi_convergence."""
    import vi_convergence as vc

    cells = {}
    for seed in vc.SEEDS:
        file = DECISION / f"buckets--seed{seed}.json"
        if file.exists():
            cells[(BUCKETS, seed)] = json.loads(file.read_text())
        for row, theirs in REUSED.items():
            if vc.cell_file(theirs, seed).exists():
                cells[(row, seed)] = json.loads(vc.cell_file(theirs, seed).read_text())
    return cells


def run_decision(worker: str) -> None:
    import os

    import vi_convergence as vc

    DECISION.mkdir(parents=True, exist_ok=True)
    i, n = (int(v) for v in worker.split("/"))
    todo = [s for s in vc.SEEDS if not (DECISION / f"buckets--seed{s}.json").exists()]
    vc.ROWS[BUCKETS] = {"bucket_by_length": True}  # (overrides the protocol's pinned random batches)
    for seed in todo[i::n]:
        cell = {"row": BUCKETS, "seed": seed, **vc.run_cell(BUCKETS, seed)}
        tmp = DECISION / f"buckets--seed{seed}.tmp"
        tmp.write_text(json.dumps(cell, indent=1) + "\n")
        os.replace(tmp, DECISION / f"buckets--seed{seed}.json")
        print(BUCKETS, seed, cell["dev"], flush=True)


def check_reuse(seed: int = 0) -> dict:
    """Refit the reused "random batches" cell of ``seed`` with today's code: its dev scores, then and now."""
    import vi_convergence as vc

    now = vc.run_cell(REUSED["random batches"], seed)
    then = json.loads(vc.cell_file(REUSED["random batches"], seed).read_text())
    result = {"seed": seed, "then": then["dev"], "now": now["dev"]}
    (DECISION / "reuse_check.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def render_decision(cells: dict) -> str:
    import vi_convergence as vc

    lines = [
        DECISION_START,
        "## Length buckets as the default: the quality side (issue 31)",
        "",
        "`python benchmarks/padding.py --decide`: the default estimator with `bucket_by_length=True` against the "
        "same estimator with random batches, on the protocol of `benchmarks/vi_convergence.py` (SST-2, MiniLM, "
        "400 training phrases per seed; dev: 500 held-out phrases of the bundled sample, where the choice is "
        "made; test: GLUE's 872 validation sentences, reported after it). Paired over the same seeds and "
        "examples, ± 95% t-interval; the random-batch, MAP and label-prior rows are the stored cells of that "
        "protocol. Rule fixed before the runs: buckets become the default unless a dev difference is worse "
        "with an interval that excludes zero. The bucket cells were run when buckets were sorted by characters "
        "(23% of the tokens padded); since 1 December 2026 they are sorted by token count (4%), which changes "
        "which examples share a batch, not the method.",
    ]
    if (DECISION / "reuse_check.json").exists():
        check = json.loads((DECISION / "reuse_check.json").read_text())
        lines += [
            "",
            f"Reuse check: the random-batch cell of seed {check['seed']}, refit with today's code, gives dev NLL "
            f"{check['now']['nll']:.4f} (stored: {check['then']['nll']:.4f}), accuracy {check['now']['accuracy']:.3f} "
            f"(stored: {check['then']['accuracy']:.3f}).",
        ]
    for split in ("dev", "test"):
        lines += [
            "",
            f"**{split}**" + (" (the decision)" if split == "dev" else " (after the decision)"),
            "",
            "| row | seeds | NLL | ECE | accuracy | ΔNLL, buckets − random | ΔECE | Δaccuracy |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in ("label prior", "MAP", "random batches", BUCKETS):
            have = [cells[(row, s)][split] for s in vc.SEEDS if (row, s) in cells]
            if not have:
                continue
            mean = {m: np.mean([h[m] for h in have]) for m in ("nll", "ece", "accuracy")}
            deltas = ["", "", ""]
            if row == BUCKETS:
                deltas = [
                    vc.verdict(vc.paired(cells, BUCKETS, split, m, "random batches"), m != "accuracy")
                    for m in ("nll", "ece", "accuracy")
                ]
            lines.append(
                f"| {row} | {len(have)} | {mean['nll']:.3f} | {mean['ece']:.3f} | {mean['accuracy']:.3f} | "
                + " | ".join(deltas)
                + " |"
            )
    lines.append(DECISION_END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--decide", action="store_true", help="the quality grid of the default (see above)")
    parser.add_argument("--worker", default="0/1", help="--decide: i/n, run every n-th missing seed from i")
    parser.add_argument("--table-only", action="store_true", help="--decide: only rewrite the docs block")
    parser.add_argument("--check-reuse", action="store_true", help="--decide: refit one reused cell")
    parser.add_argument("--output", default=str(ROOT / "docs" / "cost.md"))
    args = parser.parse_args()
    if args.decide:
        if args.check_reuse:
            print(check_reuse())
        elif not args.table_only:
            run_decision(args.worker)
        block = render_decision(decision_cells())
        print(block)
        write_block(Path(args.output), block, DECISION_START, DECISION_END)
        return
    n, epochs = (128, 1) if args.quick else (512, 2)
    X_all, _ = load_sst2("train", n=1000)
    padding = epoch_padding(X_all, 32, 128, range(5))
    X, y = load_sst2("train", n=n)
    fit_seconds(X[:64], y[:64], 1, False)  # warm-up: one-off costs are not charged to either side
    times = {"random": [], "buckets": []}
    for bucket in (False, True, True, False):
        times["buckets" if bucket else "random"].append(fit_seconds(X, y, epochs, bucket))
    result = {"padding": padding, "fit_seconds": times, "n": n, "epochs": epochs, "threads": torch.get_num_threads(),
              "quick": bool(args.quick), "defaults": defaults_label(),
              "default_buckets": BayesianSubspaceClassifier().bucket_by_length}  # fmt: skip
    (ROOT / "benchmarks" / "results" / "padding.json").write_text(json.dumps(result, indent=2))
    block = speed_block(result)
    print(block)
    write_block(Path(args.output), block, START, END)


if __name__ == "__main__":
    main()
