"""The one use of MLflow's private API (dashboard/store/mlflow_internals.py) still works with this MLflow.

If an MLflow upgrade moves its SQL models, this fails loudly; the dashboard would still work, slower.
Run: .venv/bin/python -m pytest tests/dashboard/test_mlflow_internals.py
"""
from __future__ import annotations

from dashboard.store import mlflow_internals
from pipeline import names
from pipeline.runs import tracking


def test_sql_rows_match_the_public_api(trained_runs):
    assert_bulk_read_matches_public_api(mlflow_internals.sql_metric_rows, trained_runs)


def assert_bulk_read_matches_public_api(read, run_ids: list[str]) -> None:
    """`read` (a bulk reader of mlflow_internals) gives every point get_metric_history gives (also tests/cluster)."""
    client, keys = tracking.connect(), [names.VAL_LOSS, names.TRAIN_LOSS_STEP]
    rows = read(client, run_ids, keys)
    assert rows is not None, f"{read.__name__}: this store is no longer read through MLflow's internals"
    for run_id in run_ids:
        for key in keys:
            public = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
            mine = [(r[2], r[4]) for r in rows if r[0] == run_id and r[1] == key]
            assert sorted(mine) == sorted(public) and public, (run_id, key)


def test_a_tracking_server_client_is_not_read_through_internals():
    from mlflow import MlflowClient

    assert mlflow_internals.sql_metric_rows(MlflowClient("http://127.0.0.1:1"), ["a"], ["b"]) is None


def test_sql_sampling_is_the_same_on_sqlite_in_portable_sql_and_in_numpy(long_runs, trained_runs):
    """SQLite's fast statement, the window-function one (PostgreSQL's) and histories.envelope agree row for row."""
    import numpy as np

    from dashboard.store.histories import envelope

    client, keys = tracking.connect(), [names.TRAIN_LOSS_STEP, names.VAL_LOSS]
    runs = [*long_runs.values(), *trained_runs]
    for step_range in (None, (3000, 8000)):
        fast, logged = mlflow_internals.sql_sampled_metric_rows(client, runs, keys, 200, step_range)
        portable, same = mlflow_internals.sql_sampled_metric_rows(client, runs, keys, 200, step_range, portable=True)
        assert sorted(fast) == sorted(portable) and logged == same
        full = mlflow_internals.sql_metric_rows(client, runs, keys)
        for run_id in runs:
            for key in keys:
                mine = [r for r in full if r[0] == run_id and r[1] == key
                        and (step_range is None or step_range[0] <= r[2] <= step_range[1])]
                if not mine:
                    continue
                steps, values = np.array([r[2] for r in mine]), np.array([r[4] for r in mine])
                expected = [tuple(mine[i]) for i in envelope(steps, values, 200)]
                assert sorted(tuple(r) for r in fast if r[0] == run_id and r[1] == key) == expected
                assert logged[run_id, key] == len(mine) and len(expected) <= 200
