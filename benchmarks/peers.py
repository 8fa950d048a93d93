"""Side by side with what a user would otherwise write: peft LoRA and a plain torch training loop.

python benchmarks/peers.py            # 512 SST-2 sentences, 2 epochs, alternating order (a few minutes)
python benchmarks/peers.py --quick

Needs the ``bench`` extra (``pip install -e ".[bench]"``: peft). On the bundled MiniLM, the same
sentences, batch size (32), epochs, max_length (128), threads and dropout (off) for all three:
peft LoRA r = 8 on query/value with an AdamW loop, our ``posterior="map"`` and our default VI.
Fits run in one process in the order peft, MAP, VI, VI, MAP, peft (each ratio uses the mean of
its two runs); peak memory comes from one fresh process per method. Writes a block into
docs/cost.md and JSON to benchmarks/results/peers.json.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost import PEAK_RSS_IMPORT, write_block  # the same peak-memory probe and page update as cost.py

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- peers:start -->", "<!-- peers:end -->"
BATCH, MAX_LENGTH = 32, 128


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


def peft_fit(X, y, epochs: int, seed: int = 0) -> PeftClassifier:
    torch.manual_seed(seed)
    tok = load_tokenizer("minilm")
    model = PeftClassifier().train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    y = torch.as_tensor(y)
    for _ in range(epochs):
        order = torch.randperm(len(X)).tolist()
        for i in range(0, len(X), BATCH):
            idx = order[i : i + BATCH]
            enc = tok([X[j] for j in idx], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            loss = nn.functional.cross_entropy(model(**enc), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def peft_predict(model: PeftClassifier, X) -> np.ndarray:
    tok = load_tokenizer("minilm")
    out = []
    for i in range(0, len(X), BATCH):
        enc = tok(X[i : i + BATCH], padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        out.append(torch.softmax(model(**enc), -1))
    return torch.cat(out).numpy()


def ours(posterior: str, epochs: int) -> BayesianSubspaceClassifier:
    return BayesianSubspaceClassifier(posterior=posterior, max_epochs=epochs, batch_size=BATCH, max_length=MAX_LENGTH,
                                      verbose=0, random_state=0)  # fmt: skip


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def peak_rss_mb(method: str, n: int, epochs: int) -> float:
    """Peak RSS of a fresh process that fits one method."""
    code = (
        PEAK_RSS_IMPORT + "import peers\n"
        f"X, y = peers.load_sst2('train', n={n})\n"
        + (f"peers.peft_fit(X, y, {epochs})\n" if method == "peft" else f"peers.ours({method!r}, {epochs}).fit(X, y)\n")
        + "print(peak_rss_this_process_mb())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(n: int, epochs: int, n_pred: int) -> dict:
    X, y = load_sst2("train", n=n)
    X_pred, _ = load_sst2("validation", n=n_pred)
    ours("vi", 1).fit(X[:64], y[:64])  # warm-up: one-off costs charged to nobody
    fit = {"peft": [], "map": [], "vi": []}
    predict = {"peft": [], "map": []}
    for method in ("peft", "map", "vi", "vi", "map", "peft"):
        if method == "peft":
            model, seconds = timed(lambda: peft_fit(X, y, epochs))
            predict["peft"].append(timed(lambda m=model: peft_predict(m, X_pred))[1])
        else:
            clf, seconds = timed(lambda m=method: ours(m, epochs).fit(X, y))
            if method == "map":
                predict["map"].append(timed(lambda c=clf: c.predict_proba(X_pred))[1])
        fit[method].append(seconds)
    rss = {m: peak_rss_mb(m, n, epochs) for m in ("peft", "map", "vi")}
    return {"fit_seconds": fit, "predict_seconds": predict, "peak_rss_mb": rss, "n": n, "epochs": epochs,
            "n_predict": n_pred, "threads": torch.get_num_threads()}  # fmt: skip


def table(r: dict) -> str:
    mean = {k: float(np.mean(v)) for k, v in r["fit_seconds"].items()}
    pred = {k: float(np.mean(v)) for k, v in r["predict_seconds"].items()}
    rss = r["peak_rss_mb"]
    rows = [
        (
            "fit seconds, our MAP / peft LoRA",
            mean["map"] / mean["peft"],
            1.05,
            f"{mean['map']:.1f} s / {mean['peft']:.1f} s",
        ),
        (
            "fit seconds, our VI / peft LoRA",
            mean["vi"] / mean["peft"],
            1.15,
            f"{mean['vi']:.1f} s / {mean['peft']:.1f} s",
        ),
        (
            "predict seconds, our MAP / peft forward",
            pred["map"] / pred["peft"],
            1.05,
            f"{pred['map']:.2f} s / {pred['peft']:.2f} s",
        ),
        (
            "peak RSS of fit, our MAP / peft LoRA",
            rss["map"] / rss["peft"],
            None,
            f"{rss['map']:.0f} MB / {rss['peft']:.0f} MB",
        ),
        (
            "peak RSS of fit, our VI / peft LoRA",
            rss["vi"] / rss["peft"],
            None,
            f"{rss['vi']:.0f} MB / {rss['peft']:.0f} MB",
        ),
    ]
    lines = [
        START,
        "## Against peft LoRA (the library a user would otherwise pick)",
        "",
        f"`python benchmarks/peers.py`: MiniLM, {r['n']} SST-2 sentences, {r['epochs']} epochs, batch {BATCH}, "
        f"max_length {MAX_LENGTH}, dropout off, {r['threads']} threads; predict on {r['n_predict']} sentences. "
        "peft: LoRA r=8 on query/value, mean pooling, a linear head, a plain AdamW loop. Fits alternate "
        "peft, MAP, VI, VI, MAP, peft in one process; each ratio uses the mean of two runs.",
        "",
        "| ratio | value | target | verdict | measured |",
        "|---|---|---|---|---|",
    ]
    for name, value, target, measured in rows:
        verdict = "" if target is None else ("met" if value <= target else "missed")
        lines.append(f"| {name} | {value:.3f} | {'' if target is None else f'<= {target}'} | {verdict} | {measured} |")
    return "\n".join([*lines, END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "docs" / "cost.md"))
    args = parser.parse_args()
    n, epochs, n_pred = (128, 1, 64) if args.quick else (512, 2, 256)
    result = measure(n, epochs, n_pred)
    (ROOT / "benchmarks" / "results" / "peers.json").write_text(json.dumps(result, indent=2))
    block = table(result)
    print(block)
    write_block(Path(args.output), block, START, END)


if __name__ == "__main__":
    main()
