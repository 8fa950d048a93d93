"""The command line: ``predict`` on a saved model, one-line errors for data and file mistakes, help on
every flag, and a new user's whole session (fit, score, save, load elsewhere, CLI predict) in silence."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.cli import build_parser, main

from conftest import tiny_kwargs


@pytest.fixture(scope="module")
def saved(tiny_bert_dir, toy_data, tmp_path_factory):
    """A fitted model saved both ways, and a data file of its test texts."""
    import joblib

    folder = tmp_path_factory.mktemp("cli")
    X, y = toy_data
    clf = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=3)).fit(X, np.array(["neg", "pos"])[y])
    joblib.dump(clf, folder / "model.joblib")
    clf.save_adapter(folder / "adapter")
    pd.DataFrame({"text": X[:20], "other": range(20)}).to_csv(folder / "new.tsv", sep="\t", index=False)
    return clf, folder


@pytest.mark.parametrize("model", ["model.joblib", "adapter"])
def test_predict_writes_labels_probabilities_and_uncertainty(saved, model, toy_data, capsys):
    clf, folder = saved
    out = folder / f"pred-{model}.csv"
    code = main(["predict", str(folder / "new.tsv"), "--text-column", "text", "--model", str(folder / model),
                 "--output", str(out)])  # fmt: skip
    assert code == 0
    table = pd.read_csv(out)
    assert list(table.columns) == [
        "text", "label", "proba_neg", "proba_pos", "total", "aleatoric", "epistemic",
        "novelty", "knn_distance", "feature_distance",
    ]  # fmt: skip
    labels, proba, unc = clf.predict(toy_data[0][:20], return_proba=True, return_uncertainty=True)
    assert table["label"].tolist() == labels.tolist()
    np.testing.assert_allclose(table[["proba_neg", "proba_pos"]].to_numpy(), proba, atol=1e-9)
    np.testing.assert_allclose(table["epistemic"].to_numpy(), unc["epistemic"], atol=1e-9)
    assert "Wrote 20 predictions" in capsys.readouterr().err


def test_predict_to_standard_output_as_tsv(saved, capsys):
    _, folder = saved
    code = main(["predict", str(folder / "new.tsv"), "--text-column", "text", "--model", str(folder / "adapter")])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 21 and lines[0].split("\t")[:3] == ["text", "label", "proba_neg"]


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("missing-file", "No such data file"),
        ("missing-column", "has no column(s) ['sentence']"),
        ("nan-text", "column 'text' is empty in 1 row(s) (file lines 4)"),
        ("missing-model", "No such model"),
        ("not-a-model", "is not a model saved by"),
        ("pairs-for-singles", "fitted on single texts"),
    ],
)
def test_data_and_file_mistakes_are_one_line_errors(saved, tmp_path, capsys, mistake, message):
    _, folder = saved
    data, column, model, extra = folder / "new.tsv", "text", folder / "model.joblib", []
    if mistake == "missing-file":
        data = tmp_path / "nope.tsv"
    elif mistake == "missing-column":
        column = "sentence"
    elif mistake == "nan-text":
        data = tmp_path / "nan.tsv"
        pd.DataFrame({"text": ["a", "b", None, "d"], "id": range(4)}).to_csv(data, sep="\t", index=False)
    elif mistake == "missing-model":
        model = tmp_path / "nope.joblib"
    elif mistake == "not-a-model":
        model = tmp_path / "junk.joblib"
        model.write_text("not a pickle")
    else:
        extra = ["--pair-column", "other"]
    code = main(["predict", str(data), "--text-column", column, "--model", str(model), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("subspace-bayes predict: error:") and message in err


def test_every_flag_has_help_text():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict)).choices
    assert set(subparsers) == {"demo", "fit", "evaluate", "predict"}
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest} has no help text"


def test_a_new_users_session_prints_only_what_the_script_prints(tiny_bert_dir, toy_data, tmp_path):
    X, y = toy_data
    pd.DataFrame({"text": X, "label": np.array(["neg", "pos"])[y]}).to_csv(tmp_path / "train.csv", index=False)
    fit = textwrap.dedent(
        f"""
        import pandas as pd
        from subspace_bayes import BayesianSubspaceClassifier
        df = pd.read_csv("train.csv")
        clf = BayesianSubspaceClassifier(backbone={tiny_bert_dir!r}, rank=4, max_epochs=20, batch_size=16, lr=0.1,
                                         head_lr=0.1, bayesian_head=False, max_length=32, random_state=0, verbose=0)
        clf.fit(df.text, df.label)
        print("accuracy", round(clf.score(df.text, df.label), 2) >= 0.5)
        clf.save_adapter("adapter")
        """
    )
    load = textwrap.dedent(
        """
        from subspace_bayes import load_adapter
        clf = load_adapter("adapter", verbose=0)
        print("labels", sorted(set(clf.predict(["good film", "awful plot"]))) <= ["neg", "pos"])
        """
    )
    runs = [
        [sys.executable, "-c", fit],
        [sys.executable, "-c", load],
        [sys.executable, "-m", "subspace_bayes.cli", "predict", "train.csv", "--text-column", "text",
         "--model", "adapter", "--output", "-"],
    ]  # fmt: skip
    outputs = []
    for command in runs:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stderr == "", done.stderr[-3000:]
        outputs.append(done.stdout)
    assert outputs[0] == "accuracy True\n" and outputs[1] == "labels True\n"
    assert len(outputs[2].splitlines()) == len(X) + 1
