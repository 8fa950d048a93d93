"""Cost of the Bayesian variants relative to MAP, every figure a ratio measured side by side in one run.

    python benchmarks/cost.py            # about 10 minutes on 2 CPU cores
    python benchmarks/cost.py --quick    # about 2 minutes

Prints a Markdown table and writes it to docs/cost.md (and JSON to benchmarks/results/cost.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.datasets import load_sst2
from subspace_bayes.predictive import FOLD_ROWS, mc_probabilities, posterior_draws
from subspace_bayes.text import TextCollator, TextDataset, coerce_texts

ROOT = Path(__file__).resolve().parents[1]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


#: The defaults that change what these benchmarks cost; every cost table names their values.
COST_DEFAULTS = (
    "bucket_by_length",
    "predictive",
    "n_samples",
    "draws",
    "sampled_layers",
    "covariance",
    "cov_rank",
    "bayesian_head",
    "lr_schedule",
)


def defaults_label() -> str:
    """``bucket_by_length=True, predictive='mc', ...``: the estimator defaults a table was measured under."""
    params = BayesianSubspaceClassifier().get_params(deep=False)
    return ", ".join(f"`{k}={params[k]!r}`" for k in COST_DEFAULTS)


def fit_seconds(X, y, **kw):
    clf = BayesianSubspaceClassifier(verbose=0, random_state=0, **kw)
    _, seconds = timed(lambda: clf.fit(X, y))
    return clf, seconds


def peak_rss_this_process_mb() -> float:
    """Peak resident memory of this process since it started, in MB (Linux: ``VmHWM``).

    ``getrusage``'s ``ru_maxrss`` is not reset by ``exec`` on Linux, so a child started from a
    large parent would report the parent's size; ``/proc/self/status`` has the child's own peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


#: Child-process code that makes ``peak_rss_this_process_mb`` importable.
PEAK_RSS_IMPORT = (
    f"import sys\nsys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
    "from cost import peak_rss_this_process_mb\n"
)


def peak_rss_mb(posterior: str, n: int, epochs: int, precision: str = "fp32", fit: bool = True) -> float:
    """Peak resident memory of a fresh process that fits one model (backbone included).

    With ``fit=False`` the process imports everything and loads the data but fits nothing:
    the baseline that the model's own memory adds to.
    """
    code = (
        PEAK_RSS_IMPORT + "import subspace_bayes as sb\n"
        "from subspace_bayes.datasets import load_sst2\n"
        f"X, y = load_sst2('train', n={n})\n"
        + (
            f"sb.BayesianSubspaceClassifier(posterior='{posterior}', max_epochs={epochs}, verbose=0, random_state=0, "
            f"precision='{precision}').fit(X, y)\n"
            if fit
            else ""
        )
        + "print(peak_rss_this_process_mb())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _draws(clf, S: int) -> torch.Tensor:
    """``S`` posterior draws of theta, as a prediction call makes them."""
    return posterior_draws(clf.module_.posterior, S, torch.Generator().manual_seed(0))


def batches_of(clf, X):
    loader = torch.utils.data.DataLoader(
        TextDataset(coerce_texts(X)), batch_size=clf.batch_size, collate_fn=TextCollator(clf.tokenizer_, clf.max_length)
    )
    return [Xi for Xi, _ in loader]


def predict_costs(clf, X, sample_counts, sync=lambda: None):
    """Seconds of predict for batched (folded) draws vs one pass per draw, per S.

    ``sync`` is called before each clock reading (``torch.cuda.synchronize`` on a GPU).
    """
    batches = [{k: v.to(clf.device_) for k, v in b.items()} for b in batches_of(clf, X)]
    module = clf.module_.eval()

    def clocked(fn):
        sync()
        out, seconds = timed(lambda: (fn(), sync()))
        return out, seconds

    rows = []
    for S in sample_counts:
        theta = _draws(clf, S).to(clf.device_)
        mc_probabilities(module, batches[:1], theta)  # warm-up
        _, separate = clocked(lambda t=theta, S=S: [mc_probabilities(module, batches, t[s : s + 1]) for s in range(S)])
        _, folded = clocked(lambda t=theta: mc_probabilities(module, batches, t))  # default chunking
        _, whole = clocked(lambda t=theta: mc_probabilities(module, batches, t, max_rows=10**9))  # all S in one pass
        rows.append(
            {
                "S": S,
                "batched_s": folded,
                "separate_s": separate,
                "ratio": folded / separate,
                "one_pass_s": whole,
                "one_pass_ratio": whole / separate,
            }
        )
    return rows


def profile_forward(clf, X, S: int) -> dict[str, float]:
    """Where the time of one folded forward goes: embeddings, adapters' extra work, the rest of the encoder."""
    module = clf.module_.eval()
    spent = {"embeddings (computed once, tiled)": 0.0, "adapter (B R A path)": 0.0, "head and pooling": 0.0}
    starts: dict[int, float] = {}

    def pre(m, *_):
        starts[id(m)] = time.perf_counter()

    def post(key):
        def fn(m, *_):
            spent[key] += time.perf_counter() - starts[id(m)]

        return fn

    handles = [
        module.backbone.embeddings.register_forward_pre_hook(pre),
        module.backbone.embeddings.register_forward_hook(post("embeddings (computed once, tiled)")),
    ]
    base_time = {"t": 0.0}
    for a in module.adapters:
        handles += [
            a.register_forward_pre_hook(pre),
            a.register_forward_hook(post("adapter (B R A path)")),
            a.base_layer.register_forward_pre_hook(pre),
            a.base_layer.register_forward_hook(
                lambda m, *_: base_time.__setitem__("t", base_time["t"] + time.perf_counter() - starts[id(m)])
            ),
        ]
    handles += [module.head.register_forward_pre_hook(pre), module.head.register_forward_hook(post("head and pooling"))]
    batches = batches_of(clf, X)
    theta = _draws(clf, S)
    try:
        _, total = timed(lambda: mc_probabilities(module, batches, theta))
    finally:
        for h in handles:
            h.remove()
    spent["adapter (B R A path)"] -= base_time["t"]  # keep only the low-rank path
    _, draw = timed(lambda: _draws(clf, S))
    spent["theta draws (one matmul)"] = draw
    spent["frozen encoder (attention, MLP, W0 x)"] = total - sum(spent.values())
    return {"total_s": total, **{k: v / total for k, v in spent.items()}}


def bayesian_parameter_counts(clf) -> dict[str, int]:
    """Ours (mean + covariance factors over theta) vs LoRA r=8 and a BLoB-style Bayesian LoRA on the same modules."""
    ours = sum(p.numel() for p in clf.module_.posterior.parameters())
    lora = sum(8 * (a.base_layer.in_features + a.base_layer.out_features) for a in clf.module_.adapters)
    blob = lora + sum(8 * a.base_layer.in_features for a in clf.module_.adapters)  # + std of A
    return {"ours": ours, "lora_r8": lora, "blob_r8": blob}


def frozen_weight_mb(precision: str) -> float:
    """Memory of the frozen backbone's weights when stored in ``precision``."""
    from subspace_bayes.backbones import load_backbone
    from subspace_bayes.module import AUTOCAST_DTYPES
    from subspace_bayes.options import Precision

    model = load_backbone("minilm", dtype=AUTOCAST_DTYPES[Precision(precision)])
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20


def precision_memory(n: int, epochs: int) -> dict[str, float]:
    """Peak RSS of a VI fit with fp32 and with bf16 frozen weights, the import baseline, and the weights alone."""
    return {
        "baseline_mb": peak_rss_mb("vi", n, epochs, fit=False),
        "fp32_mb": peak_rss_mb("vi", n, epochs, "fp32"),
        "bf16_mb": peak_rss_mb("vi", n, epochs, "bf16"),
        "weights_fp32_mb": frozen_weight_mb("fp32"),
        "weights_bf16_mb": frozen_weight_mb("bf16"),
    }


def precision_block(m: dict[str, float], n: int, epochs: int) -> str:
    above = (m["bf16_mb"] - m["baseline_mb"]) / (m["fp32_mb"] - m["baseline_mb"])
    return "\n".join(
        [
            PRECISION_START,
            '## Frozen weights in bf16 (`precision="bf16"`)',
            "",
            f"`python benchmarks/cost.py --memory-only`: MiniLM-L6, default VI, {n} SST-2 sentences, "
            f"{epochs} epoch(s); "
            "each number from a fresh process. The baseline process imports everything and loads the data but fits "
            "nothing.",
            "",
            "| measure | fp32 | bf16 | bf16 / fp32 |",
            "|---|---|---|---|",
            f"| frozen backbone weights | {m['weights_fp32_mb']:.1f} MB | {m['weights_bf16_mb']:.1f} MB | "
            f"{m['weights_bf16_mb'] / m['weights_fp32_mb']:.3f} |",
            f"| peak RSS of fit (process) | {m['fp32_mb']:.0f} MB | {m['bf16_mb']:.0f} MB | "
            f"{m['bf16_mb'] / m['fp32_mb']:.3f} |",
            f"| peak RSS of fit above the {m['baseline_mb']:.0f} MB baseline | "
            f"{m['fp32_mb'] - m['baseline_mb']:.0f} MB | "
            f"{m['bf16_mb'] - m['baseline_mb']:.0f} MB | {above:.3f} |",
            "",
            "MiniLM's 22.7M parameters are a small part of a CPU process (torch, transformers and the tokenizer "
            "dominate it); for a 7B decoder the weights dominate and bf16 halves them (see docs/backbones.md).",
            PRECISION_END,
        ]
    )


PRECISION_START, PRECISION_END = "<!-- precision:start -->", "<!-- precision:end -->"
COST_START, COST_END = "<!-- cost:start -->", "<!-- cost:end -->"


def write_block(path: Path, block: str, start: str = PRECISION_START, end: str = PRECISION_END) -> None:
    """Replace the block between the markers ``start`` and ``end`` in ``path`` (or append it)."""
    text = path.read_text() if path.exists() else ""
    if start in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "docs" / "cost.md"))
    parser.add_argument("--memory-only", action="store_true", help="only the fp32 vs bf16 memory block")
    args = parser.parse_args()
    n, epochs, n_pred = (128, 1, 32) if args.quick else (512, 2, 64)
    if args.memory_only:
        memory = precision_memory(n // 4, 1)
        block = precision_block(memory, n // 4, 1)
        print(block)
        write_block(Path(args.output), block)
        (ROOT / "benchmarks" / "results" / "precision_memory.json").write_text(json.dumps(memory, indent=2))
        return
    counts = (1, 8, 32) if args.quick else (1, 8, 32, 64)
    X, y = load_sst2("train", n=n)
    X_pred, _ = load_sst2("validation", n=n_pred)

    # Warm-up: the first fit in a process pays one-off costs (thread pools, allocator, tokenizer
    # caches) that would otherwise be charged to MAP and flatter every ratio against it.
    fit_seconds(X[: n // 4], y[: n // 4], posterior="vi", max_epochs=1)
    _, t_map = fit_seconds(X, y, posterior="map", max_epochs=epochs)
    vi_clf, t_vi = fit_seconds(X, y, posterior="vi", max_epochs=epochs)
    _, t_swag = fit_seconds(X, y, posterior="swag", max_epochs=epochs, swag_start=0)
    _, t_lap = fit_seconds(X, y, posterior="laplace", max_epochs=epochs)
    epoch_s = t_map / epochs
    pred = predict_costs(vi_clf, X_pred, counts)
    # Adapters on the top half of the layers only: the bottom half is then draw-independent and
    # a folded prediction computes it once per batch (adapters.draw_independent_prefix).
    n_layers = vi_clf.module_.backbone.config.num_hidden_layers
    top = rf".*layer\.({'|'.join(map(str, range(n_layers // 2, n_layers)))})\..*\.(query|value)"
    top_clf, _ = fit_seconds(X, y, posterior="vi", max_epochs=1, target_modules=top)
    top_pred = predict_costs(top_clf, X_pred, (32,))[0]
    pred32 = next(r for r in pred if r["S"] == 32)
    vi_clf.set_params(predictive="glm", n_samples=32)
    _, t_glm = timed(lambda: vi_clf.predict_proba(X_pred))
    vi_clf.set_params(predictive="mc")
    _, t_mc = timed(lambda: vi_clf.predict_proba(X_pred))
    mem_map, mem_vi = peak_rss_mb("map", n // 4, 1), peak_rss_mb("vi", n // 4, 1)
    memory = precision_memory(n // 4, 1)
    profile = profile_forward(vi_clf, X_pred, S=32)
    params = bayesian_parameter_counts(vi_clf)

    rows = [
        ("fit seconds, VI / MAP", t_vi / t_map, "<= 1.15", f"{t_vi:.0f} s / {t_map:.0f} s"),
        ("fit seconds, SWAG / MAP (same epochs)", t_swag / t_map, "<= 1.1", f"{t_swag:.0f} s / {t_map:.0f} s"),
        (
            "Laplace post-hoc step, epoch-equivalents",
            (t_lap - t_map) / epoch_s,
            "<= 1",
            f"({t_lap:.0f} - {t_map:.0f}) s / {epoch_s:.0f} s",
        ),
        *[
            (
                f"predict, batched MC (chunks of {FOLD_ROWS['cpu']} sequences) / S separate passes, S={r['S']}",
                r["ratio"],
                "<= 0.8" if r["S"] == 32 else "",
                f"{r['batched_s']:.1f} s / {r['separate_s']:.1f} s",
            )
            for r in pred
        ],
        *[
            (
                f"predict, all S draws in one pass / S separate passes, S={r['S']}",
                r["one_pass_ratio"],
                "",
                f"{r['one_pass_s']:.1f} s / {r['separate_s']:.1f} s",
            )
            for r in pred
        ],
        (
            f"predict, batched MC / S separate passes, S=32, adapters on layers {n_layers // 2}-{n_layers - 1} only "
            f"(embeddings and layers 0-{n_layers // 2 - 1} computed once per batch)",
            top_pred["ratio"],
            "",
            f"{top_pred['batched_s']:.1f} s / {top_pred['separate_s']:.1f} s",
        ),
        ("predict, GLM / MC at S=32", t_glm / t_mc, "<= 0.25", f"{t_glm:.1f} s / {t_mc:.1f} s"),
        (
            "predict_proba at S=32 (length-sorted batches) / folded MC over in-order batches",
            t_mc / pred32["batched_s"],
            "",
            f"{t_mc:.1f} s / {pred32['batched_s']:.1f} s",
        ),
        (
            "peak memory of fit, VI / MAP (process RSS)",
            mem_vi / mem_map,
            "<= 1.1",
            f"{mem_vi:.0f} MB / {mem_map:.0f} MB",
        ),
        (
            "Bayesian parameters, ours / LoRA r=8",
            params["ours"] / params["lora_r8"],
            "<= 0.1",
            f"{params['ours']:,} / {params['lora_r8']:,}",
        ),
        (
            "Bayesian parameters, ours / BLoB-style r=8",
            params["ours"] / params["blob_r8"],
            "",
            f"{params['ours']:,} / {params['blob_r8']:,}",
        ),
    ]

    def verdict(value, target):
        if not target:
            return ""
        bound = float(target.split("<=")[1].split()[0])
        return "met" if value <= bound else "missed"

    lines = [
        COST_START,
        f"`python benchmarks/cost.py{' --quick' if args.quick else ''}` "
        f"on {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}; MiniLM-L6 backbone, rank 8, "
        f"{n} SST-2 sentences, {epochs} epochs, batch 32; prediction on {n_pred} sentences. Each ratio compares "
        "two runs of the same data and settings made one after the other in the same process. Estimator "
        f"defaults otherwise: {defaults_label()}.",
        "",
        "| measure | ratio | target | verdict | raw |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {value:.3f} | {target} | {verdict(value, target)} | {raw} |"
            for name, value, target, raw in rows
        ],
        "",
        f"## Where the time of a folded prediction goes (S=32, {n_pred} sentences, {profile['total_s']:.1f} s)",
        "",
        "| part | share |",
        "|---|---|",
        *[f"| {k} | {v:.1%} |" for k, v in profile.items() if k != "total_s"],
        COST_END,
    ]
    text = "\n".join(lines)
    print(text)
    write_block(Path(args.output), text, COST_START, COST_END)  # the rest of the page is kept
    write_block(Path(args.output), precision_block(memory, n // 4, 1))
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "cost.json").write_text(
        json.dumps(
            {
                "rows": [dict(zip(("measure", "ratio", "target", "raw"), r, strict=True)) for r in rows],
                "profile": profile,
                "params": params,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
