"""The one place that uses MLflow's private internals, so an MLflow upgrade that moves them breaks here only.

tests/dashboard/test_mlflow_internals.py fails loudly when this stops working on a SQL store; the
dashboard then still works, through MLflow's public API, only slower.
"""
from __future__ import annotations

from collections.abc import Sequence

from mlflow import MlflowClient

BULK_RUNS = 500  # run ids per query (SQL parameter limits)


class InternalsChanged(RuntimeError):
    """MLflow's private store layout is not what this module expects."""


def sql_metric_rows(client: MlflowClient, run_ids: Sequence[str], keys: Sequence[str]) -> list[tuple] | None:
    """(run_id, key, step, timestamp, value, is_nan) rows of the metrics table of a SQL store, ordered by
    step and timestamp; None when `client` does not read a SQL store directly (e.g. a tracking server).

    One query per BULK_RUNS runs and plain rows instead of ORM objects: ~10x the public per-run API.
    Raises InternalsChanged when MLflow's internals moved, sqlalchemy errors when the store fails.
    """
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if not hasattr(store, "ManagedSessionMaker"):
        return None
    try:
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import SqlMetric

        columns = (SqlMetric.run_uuid, SqlMetric.key, SqlMetric.step, SqlMetric.timestamp, SqlMetric.value,
                   SqlMetric.is_nan)
    except (ImportError, AttributeError) as e:
        raise InternalsChanged(f"MLflow's SQL metric model moved: {e}") from None
    run_ids, keys, rows = sorted(set(run_ids)), sorted(set(keys)), []
    with store.ManagedSessionMaker() as session:
        for i in range(0, len(run_ids), BULK_RUNS):
            query = sa.select(*columns).where(SqlMetric.run_uuid.in_(run_ids[i:i + BULK_RUNS]), SqlMetric.key.in_(keys))
            rows += session.execute(query.order_by(SqlMetric.step, SqlMetric.timestamp)).all()
    return rows
