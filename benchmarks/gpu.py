"""The cost table on CUDA, fp32 vs bf16 autocast: throughput and ratios. Under 5 minutes on one GPU.

    python benchmarks/gpu.py                              # needs a CUDA device; prints a Markdown table
    python benchmarks/gpu.py --n 4000
    python benchmarks/gpu.py --device cpu --quick         # a smoke run of the script itself, no GPU

For each precision: fit throughput (examples/s) of MAP and VI, predict throughput at S=32, peak
GPU memory, and the ratios of benchmarks/cost.py measured side by side in this run (fit VI / MAP,
batched MC / S separate passes at S=32, GLM / MC at S=32). Every timing follows a warm-up call
(backbone load, CUDA context and kernels excluded). Writes benchmarks/results/gpu.json (or
gpu-<device>.json for other devices).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from cost import predict_costs

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.datasets import load_sst2

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def fit_throughput(X, y, posterior: str, precision: str, epochs: int, device: str, batch_size: int):
    clf = BayesianSubspaceClassifier(
        posterior=posterior,
        precision=precision,
        max_epochs=epochs,
        device=device,
        batch_size=batch_size,
        verbose=0,
        random_state=0,
    )
    clf.set_params(max_epochs=1).fit(X[:batch_size], y[:batch_size])  # warm-up: load, CUDA context, kernels
    clf.set_params(max_epochs=epochs)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    t0 = time.perf_counter()
    clf.fit(X, y)
    _sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    return clf, len(X) * epochs / seconds, peak


def predict_throughput(clf, X, device: str, S: int = 32, predictive: str = "mc") -> tuple[float, float]:
    clf.set_params(n_samples=S, predictive=predictive)
    clf.predict_proba(X[:64])
    _sync(device)
    t0 = time.perf_counter()
    clf.predict_proba(X)
    _sync(device)
    seconds = time.perf_counter() - t0
    clf.set_params(predictive="mc")
    return len(X) / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="training sentences")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the device")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA device; none is visible (use --device cpu for a smoke run).")
    n, n_pred, epochs = (64, 32, 1) if args.quick else (args.n, None, args.epochs)
    X, y = load_sst2("train", n=n)
    X_val, _ = load_sst2("validation", n=n_pred)
    rows, ratios = [], []
    for precision in ("fp32", "bf16"):
        fitted = {}
        for posterior in ("map", "vi"):
            clf, fit_tp, peak = fit_throughput(X, y, posterior, precision, epochs, args.device, args.batch_size)
            mc_tp, mc_s = predict_throughput(clf, X_val, args.device)
            fitted[posterior] = (clf, fit_tp, peak)
            rows.append(
                {
                    "precision": precision,
                    "posterior": posterior,
                    "fit_examples_per_s": fit_tp,
                    "predict_examples_per_s_S32": mc_tp,
                    "peak_fit_gpu_memory_mb": peak,
                }
            )
        vi = fitted["vi"][0]
        _, glm_s = predict_throughput(vi, X_val, args.device, predictive="glm")
        _, mc_s = predict_throughput(vi, X_val, args.device)
        folded = predict_costs(vi, X_val, (32,), sync=lambda: _sync(args.device))[0]
        ratios += [
            (precision, "fit seconds, VI / MAP", fitted["map"][1] / fitted["vi"][1], "<= 1.15"),
            (precision, "peak fit memory, VI / MAP", fitted["vi"][2] / fitted["map"][2], "<= 1.1"),
            (precision, "predict, batched MC / S separate passes, S=32", folded["ratio"], "<= 0.8"),
            (precision, "predict, all draws in one pass / S separate passes, S=32", folded["one_pass_ratio"], ""),
            (precision, "predict, GLM / MC at S=32", glm_s / mc_s, "<= 0.25"),
        ]
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "cpu"
    head = (
        f"`python benchmarks/gpu.py{' --quick' if args.quick else ''}` on {name}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, Python {platform.python_version()}; MiniLM-L6, rank 8, batch {args.batch_size}, "
        f"{n} SST-2 sentences x {epochs} epochs, prediction on {len(X_val)} sentences"
    )
    lines = [
        head,
        "",
        "| precision | posterior | fit examples/s | predict examples/s (S=32; MAP: 1 draw) | peak fit GPU MB |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['precision']} | {r['posterior']} | {r['fit_examples_per_s']:.0f} | "
        f"{r['predict_examples_per_s_S32']:.0f} | {r['peak_fit_gpu_memory_mb']:.0f} |"
        for r in rows
    ]
    lines += ["", "| precision | measure | ratio | target |", "|---|---|---|---|"]
    lines += [f"| {p} | {m} | {v:.3f} | {t} |" for p, m, v, t in ratios]
    text = "\n".join(lines)
    print(text)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = "gpu" if args.device.startswith("cuda") else f"gpu-{args.device}"
    (out / f"{stem}.json").write_text(
        json.dumps(
            {
                "device": name,
                "args": vars(args),
                "rows": rows,
                "ratios": [dict(zip(("precision", "measure", "ratio", "target"), r, strict=True)) for r in ratios],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
