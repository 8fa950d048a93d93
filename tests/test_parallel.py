"""Distributed hyperparameter search: joblib processes and Dask's joblib backend on a LocalCluster."""

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from subspace_bayes import BayesianSubspaceClassifier

from conftest import tiny_kwargs

GRID = {"rank": [2, 4]}


def _search(tiny_bert_dir, tmp_path, n_jobs):
    # One checkpoint folder for the whole search: every fit writes its own file.
    base = BayesianSubspaceClassifier(**tiny_kwargs(tiny_bert_dir, max_epochs=2, checkpoint_dir=f"{tmp_path}/{n_jobs}"))
    return GridSearchCV(base, GRID, cv=2, n_jobs=n_jobs)


def test_grid_search_in_worker_processes_matches_sequential(tiny_bert_dir, toy_data, tmp_path):
    sequential = _search(tiny_bert_dir, tmp_path, n_jobs=1).fit(*toy_data)
    with joblib.parallel_backend("loky"):
        parallel = _search(tiny_bert_dir, tmp_path, n_jobs=2).fit(*toy_data)
    np.testing.assert_allclose(parallel.cv_results_["mean_test_score"], sequential.cv_results_["mean_test_score"])
    # 2 grid points x 2 folds + the refit, each with its own checkpoint file.
    assert len(list((tmp_path / "2").glob("checkpoint-*.pt"))) == 5


def test_grid_search_on_a_dask_local_cluster(tiny_bert_dir, toy_data, tmp_path):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster),
        joblib.parallel_backend("dask"),
    ):
        search = _search(tiny_bert_dir, tmp_path, n_jobs=-1).fit(*toy_data)
    assert len(search.cv_results_["params"]) == 2
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.predict(toy_data[0][:4]).shape == (4,)
