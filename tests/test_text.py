"""Text inputs: coercion of X, tokenisation, truncation, length order."""

import warnings

import numpy as np
import pytest
import torch

from subspace_bayes import BayesianSubspaceClassifier
from subspace_bayes.text import coerce_texts

from conftest import tiny_kwargs


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir, toy_data):
    y = np.array(["neg", "pos"])[toy_data[1]]
    return BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=3)).fit(toy_data[0], y)


def test_long_texts_are_truncated_with_one_warning(fitted):
    long_text = " ".join(["good movie"] * 200)
    fitted.set_params(max_length=16)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted.predict_proba([long_text, long_text, "short"])
    finally:
        fitted.set_params(max_length=32)
    messages = [str(w.message) for w in caught if "max_length" in str(w.message)]
    assert len(messages) == 1 and "truncated" in messages[0]


def test_empty_strings_are_allowed(fitted):
    p = fitted.predict_proba(["", "good"])
    assert p.shape == (2, 2) and np.isfinite(p).all()


def test_coerce_texts_accepts_lists_arrays_series_pairs_and_dataframes():
    import pandas as pd

    assert coerce_texts(["a", "b"]).first == ["a", "b"]
    assert coerce_texts(np.array(["a", "b"])).second is None
    assert coerce_texts(pd.Series(["a", "b"])).first == ["a", "b"]
    pairs = coerce_texts([("a", "x"), ("b", "y")])
    assert pairs.first == ["a", "b"] and pairs.second == ["x", "y"]
    frame = coerce_texts(pd.DataFrame({"s1": ["a", "b"], "s2": ["x", "y"]}))
    assert frame.second == ["x", "y"]


@pytest.mark.parametrize(
    "X, error, fragment",
    [
        ("one text", ValueError, "wrap it in a list"),
        ([], ValueError, "empty"),
        (["a", None], TypeError, "row 1"),
        ([("a", "b", "c")], ValueError, "exactly 2"),
    ],
)
def test_coerce_texts_errors_name_the_problem(X, error, fragment):
    with pytest.raises(error, match=fragment):
        coerce_texts(X)


def test_by_length_sorts_single_texts_and_pairs_stably():
    assert coerce_texts(["ccc", "a", "bb", "a"]).by_length().tolist() == [1, 3, 2, 0]
    pairs = coerce_texts([("aaaa", "b"), ("a", "b"), ("aa", "bb")])
    assert pairs.by_length().tolist() == [1, 2, 0]


def test_length_buckets_cover_every_example_once_and_are_reproducible():
    from subspace_bayes.text import LengthBucketBatchSampler

    rng = np.random.RandomState(0)
    lengths = rng.randint(1, 200, size=1000)
    make = lambda: LengthBucketBatchSampler(lengths, 32, torch.Generator().manual_seed(5), pool_batches=10)
    batches = list(make())
    assert len(batches) == len(make())
    assert sorted(i for b in batches for i in b) == list(range(1000)) and max(map(len, batches)) <= 32
    assert batches == list(make())  # same seed, same batches
    sampler = make()
    assert list(sampler) != list(sampler)  # a new order every epoch

    def padding(bs):
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in bs) / sum(
            len(b) * lengths[b].max() for b in bs
        )

    shuffled = torch.randperm(1000, generator=torch.Generator().manual_seed(5)).numpy()
    random_batches = [shuffled[i : i + 32] for i in range(0, 1000, 32)]
    assert padding([np.array(b) for b in batches]) < 0.25 * padding(random_batches)


def test_bucketed_fit_is_reproducible(tiny_bert_dir, toy_data, toy_test):
    kw = tiny_kwargs(tiny_bert_dir, bucket_by_length=True, max_epochs=2)
    a = BayesianSubspaceClassifier(**kw).fit(*toy_data).predict_proba(toy_test[0])
    b = BayesianSubspaceClassifier(**kw).fit(*toy_data).predict_proba(toy_test[0])
    np.testing.assert_array_equal(a, b)


def test_token_lengths_are_what_a_batch_pads_to_and_are_counted_once_per_fit(fitted, monkeypatch):
    # The estimator sorts by token count: each example's count equals its attention-mask length in a
    # collated batch (special tokens in, truncation at max_length), for single texts and pairs alike.
    from subspace_bayes.text import TextCollator, TextDataset

    collator = fitted._collator()
    texts = ["a good movie", "", "bad " * 40, "the plot was fine but the ending bad"]
    for inputs in (coerce_texts(texts), coerce_texts([(t, "fine") for t in texts])):
        counts = collator.lengths(inputs, chunk=3)  # chunks join up
        X, _ = collator([(TextDataset(inputs)[i][0], 0) for i in range(len(inputs))])
        np.testing.assert_array_equal(counts, X["attention_mask"].sum(1).numpy())
        assert counts.max() == fitted.max_length  # the long text is cut
    # Sorting by tokens pads less than sorting by characters here ("bad " is 4 characters, 1 token).
    inputs = coerce_texts(["bad " * 6, "excellent wonderful", "ok", "unbelievably overwhelming performances"])
    tokens, chars = collator.lengths(inputs), inputs.lengths()
    assert inputs.by_length(tokens).tolist() != inputs.by_length().tolist()
    assert np.argsort(tokens, kind="stable").tolist() == inputs.by_length(tokens).tolist()
    slow = TextCollator(type("Slow", (), {"is_fast": False})(), max_length=32)
    np.testing.assert_array_equal(slow.lengths(inputs), chars)  # a slow tokenizer: the free proxy
    calls = []
    counted = TextCollator.lengths
    monkeypatch.setattr(TextCollator, "lengths", lambda self, inputs, **kw: calls.append(1) or counted(self, inputs))
    clone = BayesianSubspaceClassifier(**{**fitted.get_params(), "max_epochs": 3}).fit(*_toy(fitted))
    assert len(clone.history) == 3 and len(calls) == 1  # counted once: the buckets for 3 epochs and the feature pass


def _toy(fitted):
    from conftest import make_toy_texts

    X, y = make_toy_texts(48, seed=3)
    return X, fitted.classes_[y]
