"""Padding in training batches: random batches vs length buckets (``bucket_by_length=True``).

python benchmarks/padding.py            # 512 SST-2 sentences, 2 epochs per fit, 2 fits each way (a few minutes)
python benchmarks/padding.py --quick

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
from subspace_bayes.text import LengthBucketBatchSampler, coerce_texts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import write_block  # the page update shared by the benchmarks

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- padding:start -->", "<!-- padding:end -->"


def padded_fraction(token_lengths: np.ndarray, batches: list[list[int]]) -> float:
    """Padded tokens / all tokens of the padded batches (each batch padded to its longest example)."""
    padded = sum(len(b) * token_lengths[b].max() for b in batches)
    return float(1.0 - sum(token_lengths[b].sum() for b in batches) / padded)


def epoch_padding(X: list[str], batch_size: int, max_length: int, seeds: range) -> dict[str, float]:
    tok = load_tokenizer("minilm")
    tokens = np.array(
        [min(len(ids), max_length) for ids in tok(X, truncation=True, max_length=max_length)["input_ids"]]
    )
    chars = coerce_texts(X).lengths()
    shuffled, bucketed = [], []
    for seed in seeds:
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed)).tolist()
        shuffled.append(padded_fraction(tokens, [order[i : i + batch_size] for i in range(0, len(X), batch_size)]))
        sampler = LengthBucketBatchSampler(chars, batch_size, torch.Generator().manual_seed(seed))
        bucketed.append(padded_fraction(tokens, list(sampler)))
    return {"random": float(np.mean(shuffled)), "buckets": float(np.mean(bucketed))}


def fit_seconds(X, y, epochs: int, bucket: bool) -> float:
    clf = BayesianSubspaceClassifier(max_epochs=epochs, bucket_by_length=bucket, verbose=0, random_state=0)
    t0 = time.perf_counter()
    clf.fit(X, y)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "docs" / "cost.md"))
    args = parser.parse_args()
    n, epochs = (128, 1) if args.quick else (512, 2)
    X_all, _ = load_sst2("train", n=1000)
    padding = epoch_padding(X_all, 32, 128, range(5))
    X, y = load_sst2("train", n=n)
    fit_seconds(X[:64], y[:64], 1, False)  # warm-up: one-off costs are not charged to either side
    times = {"random": [], "buckets": []}
    for bucket in (False, True, True, False):
        times["buckets" if bucket else "random"].append(fit_seconds(X, y, epochs, bucket))
    result = {"padding": padding, "fit_seconds": times, "n": n, "epochs": epochs, "threads": torch.get_num_threads()}
    (ROOT / "benchmarks" / "results" / "padding.json").write_text(json.dumps(result, indent=2))
    random_s, bucket_s = np.mean(times["random"]), np.mean(times["buckets"])
    block = "\n".join([
        START,
        "## Padding: random training batches vs length buckets",
        "",
        f"`python benchmarks/padding.py{' --quick' if args.quick else ''}`: MiniLM tokenizer, batch 32, max_length "
        f"128. Padded share of the tokens over one epoch of 1,000 SST-2 sentences (mean of 5 shuffles), and fit "
        f"seconds of the default VI on {n} sentences x {epochs} epochs, {torch.get_num_threads()} threads, run "
        "random, buckets, buckets, random in one process.",
        "",
        "| batches | padded tokens | fit seconds (2 runs) |",
        "|---|---|---|",
        f"| random (default) | {padding['random']:.1%} | {', '.join(f'{t:.1f}' for t in times['random'])} |",
        f"| length buckets (`bucket_by_length=True`) | {padding['buckets']:.1%} | "
        f"{', '.join(f'{t:.1f}' for t in times['buckets'])} |",
        "",
        f"Fit speed-up with buckets: {random_s / bucket_s:.2f}x (mean of the two runs each).",
        END,
    ])  # fmt: skip
    print(block)
    write_block(Path(args.output), block, START, END)


if __name__ == "__main__":
    main()
