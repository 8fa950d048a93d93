"""Side by side with what a user would otherwise write: a plain peft LoRA training loop.

python benchmarks/peers.py            # 400 SST-2 sentences, 1 and 5 epochs, 3 alternating repetitions
python benchmarks/peers.py --quick
python benchmarks/peers.py --table-only   # rewrite the docs block from benchmarks/results/peers.json

Needs the ``bench`` extra (``pip install -e ".[bench]"``: peft). On the bundled MiniLM, the same
sentences, batch size (32), epochs, max_length (128), threads and dropout (off) for all: peft LoRA
r = 8 on query/value with an AdamW loop, our ``posterior="map"`` and our default (VI). Each runs
under both batchings, so that ratios compare like with like: random batches (the plain loop a user
writes; ``bucket_by_length=False``) and length buckets (:class:`~subspace_bayes.text.LengthBucketBatchSampler`
for peft too, both sorting by token count; ``bucket_by_length=True``). Our fit time includes the pass that collects the
feature statistics for the unfamiliar-inputs score. Predictions: ours sorts by token count; peft
is timed with random order and sorted the same way. Each repetition runs every configuration, in reversed order
every other repetition; the table gives medians and ranges over the repetitions. Peak memory comes
from one fresh process per method. Writes a block into docs/cost.md and JSON to
benchmarks/results/peers.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.backbones import load_backbone, load_tokenizer, pool
from subspace_bayes.datasets import load_sst2
from subspace_bayes.text import LengthBucketBatchSampler, TextCollator, TextDataset, coerce_texts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import PEAK_RSS_IMPORT, defaults_label, write_block  # the peak-memory probe, labels and page update

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "peers.json"
START, END = "<!-- peers:start -->", "<!-- peers:end -->"
BATCH, MAX_LENGTH = 32, 128
BATCHINGS = ("random", "buckets")
#: Targets of issue 31, against the plain peft loop (random batches), our side in its default batching.
TARGETS = {"map": 0.85, "vi": 1.0}


class PeftClassifier(nn.Module):
    """What a user writes with peft: LoRA r=8 on query/value, mean pooling, a linear head."""

    def __init__(self, n_classes: int = 2):
        from peft import LoraConfig, get_peft_model

        super().__init__()
        base = load_backbone("minilm")  # dropout off, as in ours
        config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"])
        self.encoder = get_peft_model(base, config)
        self.head = nn.Linear(base.config.hidden_size, n_classes)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(pool(hidden, attention_mask, "mean"))


def token_lengths(tok, X) -> np.ndarray:
    """Tokens per text, as our estimator counts them to sort by length (the same for peft: like for like)."""
    return TextCollator(tok, MAX_LENGTH).lengths(coerce_texts(X))


def batches(X, batching: str, generator: torch.Generator, lengths: np.ndarray | None) -> list[list[int]]:
    """One epoch's batches: a shuffled order cut in batches, or length buckets (ours, for peft too)."""
    if batching == "buckets":
        return list(LengthBucketBatchSampler(lengths, BATCH, generator))
    order = torch.randperm(len(X), generator=generator).tolist()
    return [order[i : i + BATCH] for i in range(0, len(X), BATCH)]


def peft_fit(X, y, epochs: int, batching: str = "random", seed: int = 0) -> PeftClassifier:
    torch.manual_seed(seed)
    tok = load_tokenizer("minilm")
    model = PeftClassifier().train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    y = torch.as_tensor(y)
    generator = torch.Generator().manual_seed(seed)
    lengths = token_lengths(tok, X) if batching == "buckets" else None  # once per fit, as ours
    for _ in range(epochs):
        for idx in batches(X, batching, generator, lengths):
            enc = tok([X[j] for j in idx], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            loss = nn.functional.cross_entropy(model(**enc), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def peft_predict(model: PeftClassifier, X, sort: bool = False) -> np.ndarray:
    tok = load_tokenizer("minilm")
    order = np.argsort(token_lengths(tok, X), kind="stable") if sort else np.arange(len(X))
    out = []
    for i in range(0, len(X), BATCH):
        enc = tok([X[j] for j in order[i : i + BATCH]], padding=True, truncation=True, max_length=MAX_LENGTH,
                  return_tensors="pt")  # fmt: skip
        out.append(torch.softmax(model(**enc), -1))
    probs = torch.cat(out).numpy()
    result = np.empty_like(probs)
    result[order] = probs
    return result


def ours(posterior: str, epochs: int, batching: str | None = None) -> BayesianSubspaceClassifier:
    """Our estimator at its defaults, but for the posterior, the epochs and (if given) the batching."""
    buckets = {} if batching is None else {"bucket_by_length": batching == "buckets"}
    return BayesianSubspaceClassifier(posterior=posterior, max_epochs=epochs, batch_size=BATCH, max_length=MAX_LENGTH,
                                      verbose=0, random_state=0, **buckets)  # fmt: skip


def default_batching() -> str:
    return "buckets" if BayesianSubspaceClassifier().bucket_by_length else "random"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def peak_rss_mb(method: str, n: int, epochs: int) -> float:
    """Peak RSS of a fresh process that fits one method (ours in its default batching)."""
    code = (
        PEAK_RSS_IMPORT + "import peers\n"
        f"X, y = peers.load_sst2('train', n={n})\n"
        + (f"peers.peft_fit(X, y, {epochs})\n" if method == "peft" else f"peers.ours({method!r}, {epochs}).fit(X, y)\n")
        + "print(peak_rss_this_process_mb())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def one_repetition(X, y, X_pred, epochs: int, reverse: bool) -> dict:
    """Every configuration once: fit seconds, our feature-statistics pass, prediction seconds."""
    configs = [(m, b) for b in BATCHINGS for m in ("peft", "map", "vi")]
    out = {"fit": {}, "feature_pass": {}, "predict": {}}
    for method, batching in reversed(configs) if reverse else configs:
        key = f"{method}/{batching}"
        if method == "peft":
            model, out["fit"][key] = timed(lambda b=batching: peft_fit(X, y, epochs, b))
            if batching == "random":
                out["predict"]["peft/random order"] = timed(lambda m=model: peft_predict(m, X_pred))[1]
                out["predict"]["peft/sorted"] = timed(lambda m=model: peft_predict(m, X_pred, sort=True))[1]
            continue
        clf, out["fit"][key] = timed(lambda m=method, b=batching: ours(m, epochs, b).fit(X, y))
        data = TextDataset(coerce_texts(X), np.searchsorted(clf.classes_, y))
        out["feature_pass"][key] = timed(lambda c=clf, d=data: c._fit_feature_statistics(d))[1]
        if method == "map" and batching == "random":
            out["predict"]["map/sorted"] = timed(lambda c=clf: c.predict_proba(X_pred))[1]
    return out


def measure(n: int, epoch_settings: tuple[int, ...], n_pred: int, repetitions: int) -> dict:
    X, y = load_sst2("train", n=n)
    X_pred, _ = load_sst2("validation", n=n_pred)
    ours("vi", 1).fit(X[:64], y[:64])  # warm-up: one-off costs charged to nobody
    peft_fit(X[:64], y[:64], 1)
    runs = {str(e): [] for e in epoch_settings}
    for rep in range(repetitions):
        for epochs in epoch_settings:
            runs[str(epochs)].append(one_repetition(X, y, X_pred, epochs, reverse=rep % 2 == 1))
            print(f"repetition {rep}, {epochs} epochs: {runs[str(epochs)][-1]['fit']}", flush=True)
    rss = {m: peak_rss_mb(m, n, 1) for m in ("peft", "map", "vi")}
    return {"runs": runs, "peak_rss_mb": rss, "n": n, "n_predict": n_pred, "repetitions": repetitions,
            "threads": torch.get_num_threads(), "default_batching": default_batching(),
            "defaults": defaults_label()}  # fmt: skip


def _median_range(values: list[float]) -> str:
    return f"{np.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"


def ratio(runs: list[dict], part: str, ours_key: str, peer_key: str) -> tuple[float, float, float]:
    """Median of the per-repetition ratios, and their range."""
    r = [run[part][ours_key] / run[part][peer_key] for run in runs]
    return float(np.median(r)), float(min(r)), float(max(r))


def table(r: dict) -> str:
    default = r["default_batching"]
    lines = [
        START,
        "## Against peft LoRA (the library a user would otherwise pick)",
        "",
        f"`python benchmarks/peers.py`: MiniLM, {r['n']} SST-2 sentences, batch {BATCH}, max_length {MAX_LENGTH}, "
        f"dropout off, {r['threads']} threads, {r['repetitions']} repetitions (configurations in reversed order "
        "every other one); predict on "
        f"{r['n_predict']} sentences. peft: LoRA r=8 on query/value, mean pooling, a linear head, a plain AdamW "
        "loop. Each side runs with random batches and with length buckets (the same sampler, by token count); "
        "our fit includes "
        f"the pass that collects the feature statistics of the unfamiliar-inputs score. Our default batching: "
        f"**{default}**. Targets (issue 31) compare our default with the plain peft loop (random batches). "
        f"Estimator defaults: {r.get('defaults', '')}.",
    ]
    for epochs, runs in r["runs"].items():
        fits = {k: [run["fit"][k] for run in runs] for k in runs[0]["fit"]}
        lines += [
            "",
            f"**{epochs} epoch{'s' if epochs != '1' else ''}**: fit seconds, median (range)",
            "",
            "| batches | peft LoRA | our MAP | our default (VI) | our feature-statistics pass (MAP, VI) |",
            "|---|---|---|---|---|",
        ]
        for b in BATCHINGS:
            passes = [np.median([run["feature_pass"][f"{m}/{b}"] for run in runs]) for m in ("map", "vi")]
            lines.append(
                f"| {b} | {_median_range(fits[f'peft/{b}'])} | {_median_range(fits[f'map/{b}'])} "
                f"| {_median_range(fits[f'vi/{b}'])} | {passes[0]:.1f} s, {passes[1]:.1f} s |"
            )
        lines += ["", "| ratio, median of the repetitions (range) | value | target | verdict |", "|---|---|---|---|"]
        for method, name in (("map", "our MAP"), ("vi", "our default (VI)")):
            med, lo, hi = ratio(runs, "fit", f"{method}/{default}", "peft/random")
            target = TARGETS[method]
            verdict = "met" if med <= target else "missed"
            lines.append(
                f"| {name} ({default}) / plain peft loop (random) | {med:.3f} ({lo:.3f}–{hi:.3f}) | <= {target} "
                f"| {verdict} |"
            )
            for b in BATCHINGS:
                med, lo, hi = ratio(runs, "fit", f"{method}/{b}", f"peft/{b}")
                lines.append(f"| {name} / peft, both {b} (like for like) | {med:.3f} ({lo:.3f}–{hi:.3f}) |  |  |")
    runs = r["runs"][next(iter(r["runs"]))]
    pred = {k: [run["predict"][k] for run in runs] for k in runs[0]["predict"]}
    rss = r["peak_rss_mb"]
    lines += [
        "",
        "Prediction (seconds, median (range)): our MAP, length-sorted "
        f"{_median_range(pred['map/sorted'])}; peft forward in random order "
        f"{_median_range(pred['peft/random order'])}, "
        f"length-sorted {_median_range(pred['peft/sorted'])}. Like for like (both sorted): "
        f"{ratio(runs, 'predict', 'map/sorted', 'peft/sorted')[0]:.3f}. Peak RSS of a 1-epoch fit in a fresh "
        f"process: peft {rss['peft']:.0f} MB, our MAP {rss['map']:.0f} MB, our default {rss['vi']:.0f} MB.",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "docs" / "cost.md"))
    args = parser.parse_args()
    if args.table_only:
        result = json.loads(RESULT.read_text())
    else:
        n, epochs, n_pred, reps = (96, (1,), 64, 2) if args.quick else (400, (1, 5), 256, 3)
        result = measure(n, epochs, n_pred, reps)
        RESULT.write_text(json.dumps(result, indent=2))
    block = table(result)
    print(block)
    write_block(Path(args.output), block, START, END)


if __name__ == "__main__":
    main()
