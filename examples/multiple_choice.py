"""Multiple-choice QA the paper's way: the answer is read from a causal LM's next-token logits.

python examples/multiple_choice.py --quick
    A tiny random Llama and ARC-style synthetic questions: runs in seconds on a CPU, offline.
python examples/multiple_choice.py --backbone meta-llama/Llama-2-7b-hf --dataset ARC-Challenge
    The paper's setting (bf16 weights, adapters on q_proj/v_proj, rank 32) on one GPU; needs the
    hub (or a local copy), the `datasets` package and a licence for the gated model.
    docs/backbones.md gives the memory it needs.

With head="lm" no new head is trained: the logits of the classes A-D are the LM's logits of the
tokens " A" ... " D" after the prompt, so the posterior over the cores carries all the adaptation.
"""

import argparse
import tempfile

import numpy as np

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.metrics import expected_calibration_error, negative_log_likelihood

LETTERS = ["A", "B", "C", "D", "E"]

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--quick", action="store_true", help="tiny random Llama, synthetic questions")
parser.add_argument("--backbone", default="meta-llama/Llama-2-7b-hf")
parser.add_argument("--dataset", default="ARC-Challenge", choices=["ARC-Challenge", "ARC-Easy"])
parser.add_argument("--rank", type=int, default=32)
args = parser.parse_args()


def prompt(question: str, options: list[str]) -> str:
    lines = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))
    return f"Question: {question}\n{lines}\nAnswer:"


def synthetic_questions(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """ARC-style four-option questions with one right answer (which word is positive?)."""
    rng = np.random.RandomState(seed)
    good, bad = ["good", "great", "fun", "nice"], ["bad", "dull", "poor", "ugly", "awful"]
    X, y = [], []
    for _ in range(n):
        options = [*rng.choice(bad, size=3, replace=False), rng.choice(good)]
        order = rng.permutation(4)
        X.append(prompt("Which word is good?", [options[j] for j in order]))
        y.append(LETTERS[int(np.flatnonzero(order == 3)[0])])
    return X, np.array(y)


def tiny_llama(folder: str) -> str:
    """Save a tiny random Llama and a small word-level tokenizer into ``folder``."""
    import torch
    from transformers import BertTokenizerFast, LlamaConfig, LlamaForCausalLM

    words = ["question", "which", "word", "is", "good", "great", "fun", "nice", "bad", "dull", "poor", "ugly",
             "awful", "answer", ":", "?", "."]  # fmt: skip
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *[c.lower() for c in LETTERS]]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def arc(split: str) -> tuple[list[str], np.ndarray]:
    try:
        from datasets import load_dataset
    except ImportError:
        raise SystemExit("The full run reads ARC with the `datasets` package: pip install datasets") from None
    data = load_dataset("allenai/ai2_arc", args.dataset, split=split)
    rows = [r for r in data if r["answerKey"] in LETTERS[: len(r["choices"]["text"])]]
    return [prompt(r["question"], r["choices"]["text"]) for r in rows], np.array([r["answerKey"] for r in rows])


if args.quick:
    backbone = tiny_llama(tempfile.mkdtemp())
    (X, y), (X_test, y_test) = synthetic_questions(64, 0), synthetic_questions(32, 1)
    settings = dict(rank=2, max_epochs=3, batch_size=16, lr=0.05, n_samples=8, device="cpu", max_length=64)
else:
    backbone = args.backbone
    (X, y), (X_test, y_test) = arc("train"), arc("test")
    settings = dict(rank=args.rank, precision="bf16", max_epochs=3, batch_size=8, max_length=512, n_samples=16)

clf = BayesianSubspaceClassifier(
    backbone=backbone,
    head="lm",
    label_tokens={c: f" {c}" for c in LETTERS if c in set(y)},
    target_modules=["q_proj", "v_proj"],
    random_state=0,
    verbose=0,
    **settings,
).fit(X, y)
proba = clf.predict_proba(X_test)
print(f"cores D = {clf.n_theta_}, classes {clf.classes_.tolist()}")
print(f"accuracy {np.mean(clf.classes_[proba.argmax(1)] == y_test):.3f}")
print(f"ECE {expected_calibration_error(y_test, proba, labels=clf.classes_):.3f}")
print(f"NLL {negative_log_likelihood(y_test, proba, labels=clf.classes_):.3f}")
