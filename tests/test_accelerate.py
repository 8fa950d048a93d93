"""The Accelerate code path, exercised on the CPU with a single process."""

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from conftest import TOY_LEARNED, tiny_kwargs

accelerate = pytest.importorskip("accelerate", reason="accelerate is not installed")


@pytest.fixture(scope="module")
def accelerator():
    return accelerate.Accelerator(cpu=True)


def test_accelerated_fit_predict_pickle_and_clone(tiny_bert_dir, toy_data, toy_test, accelerator, tmp_path):
    from subspace_bayes.accelerate import AcceleratedBayesianSubspaceClassifier

    clf = AcceleratedBayesianSubspaceClassifier(accelerator=accelerator, **tiny_kwargs(tiny_bert_dir, device=None))
    clf.fit(*toy_data)
    p = clf.predict_proba(toy_test[0])
    assert np.isfinite(p).all() and np.mean(p.argmax(1) == toy_test[1]) >= TOY_LEARNED
    assert len(clf.history) == clf.max_epochs
    # The fitted estimator pickles (the accelerator is dropped) and predicts the same after loading.
    joblib.dump(clf, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    assert loaded.accelerator is None
    np.testing.assert_allclose(loaded.predict_proba(toy_test[0]), p, atol=1e-10)
    # Clones share the accelerator and are unfitted.
    c = clone(clf)
    assert c.accelerator is accelerator and not hasattr(c, "module_")


def test_accelerated_estimator_in_grid_search(tiny_bert_dir, toy_data, accelerator):
    from subspace_bayes.accelerate import AcceleratedBayesianSubspaceClassifier

    base = AcceleratedBayesianSubspaceClassifier(
        accelerator=accelerator, **tiny_kwargs(tiny_bert_dir, device=None, max_epochs=2)
    )
    search = GridSearchCV(base, {"rank": [2, 4]}, cv=2).fit(*toy_data)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
