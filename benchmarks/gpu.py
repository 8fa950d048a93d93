"""Throughput on CUDA: fit (MAP, VI) and predict (S=32), fp32 vs bf16 autocast. Under 5 minutes on one GPU.

    python benchmarks/gpu.py              # needs a CUDA device; prints a Markdown table
    python benchmarks/gpu.py --n 2000

Every figure is measured in this run, after one warm-up fit per precision (CUDA kernels and
the backbone load are excluded from the timings). Writes benchmarks/results/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.datasets import load_sst2

ROOT = Path(__file__).resolve().parents[1]


def _sync():
    torch.cuda.synchronize()


def fit_throughput(X, y, posterior: str, precision: str, epochs: int) -> tuple[BayesianSubspaceClassifier, float]:
    clf = BayesianSubspaceClassifier(posterior=posterior, precision=precision, max_epochs=epochs, device="cuda",
                                     batch_size=64, verbose=0, random_state=0)
    clf.fit(X[:64], y[:64])  # warm-up: backbone load, CUDA context and kernels
    clf.set_params(warm_start=True)
    _sync()
    t0 = time.perf_counter()
    clf.fit(X, y)
    _sync()
    return clf, len(X) * epochs / (time.perf_counter() - t0)


def predict_throughput(clf, X, S: int = 32) -> float:
    clf.set_params(n_samples=S, batch_size=64)
    clf.predict_proba(X[:64])
    _sync()
    t0 = time.perf_counter()
    clf.predict_proba(X)
    _sync()
    return len(X) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA device; none is visible.")
    X, y = load_sst2("train", n=args.n)
    X_val, _ = load_sst2("validation")
    rows = []
    for precision in ("fp32", "bf16"):
        for posterior in ("map", "vi"):
            torch.cuda.reset_peak_memory_stats()
            clf, fit_tp = fit_throughput(X, y, posterior, precision, args.epochs)
            rows.append({"precision": precision, "posterior": posterior, "fit_examples_per_s": fit_tp,
                         "predict_examples_per_s_S32": predict_throughput(clf, X_val),
                         "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20})
    card = torch.cuda.get_device_name(0)
    head = (f"GPU benchmark on {card}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"{platform.python_version()}; MiniLM-L6, rank 8, batch 64, {args.n} SST-2 sentences x {args.epochs} epochs")
    lines = [head, "", "| precision | posterior | fit examples/s | predict examples/s (S=32) | peak GPU MB |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['precision']} | {r['posterior']} | {r['fit_examples_per_s']:.0f} | "
              f"{r['predict_examples_per_s_S32']:.0f} | {r['peak_gpu_memory_mb']:.0f} |" for r in rows]
    by = {(r["precision"], r["posterior"]): r for r in rows}
    for precision in ("fp32", "bf16"):
        ratio = by[(precision, "map")]["fit_examples_per_s"] / by[(precision, "vi")]["fit_examples_per_s"]
        lines.append(f"\nfit seconds VI / MAP ({precision}): {ratio:.3f}")
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"card": card, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
