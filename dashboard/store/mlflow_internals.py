"""The one place that uses MLflow's private internals, so an MLflow upgrade that moves them breaks here only.

Two fast paths for many runs' metric histories: on a SQL store, one query on MLflow's SQL models;
against a tracking server, the bulk endpoint MLflow's own UI charts read. tests/dashboard/
test_mlflow_internals.py (SQL) and tests/cluster/test_server_store.py (server) fail loudly when
either stops working; the dashboard then still works, through MLflow's public API, only slower.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from mlflow import MlflowClient

BULK_RUNS = 500  # run ids per query (SQL parameter limits)
# MLflow's UI endpoint (mlflow/server/handlers.py: get_metric_history_bulk_interval_handler): at most
# 100 run ids per request and 2500 points per run; a run with more points comes back down-sampled.
SERVER_BULK_PATH = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
SERVER_BULK_RUNS = 25      # run ids per request (it takes 100): more, smaller requests share the server's workers
SERVER_MAX_POINTS = 2500
SERVER_THREADS = 8


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


def server_metric_rows(client: MlflowClient, run_ids: Sequence[str], keys: Sequence[str]) -> list[tuple] | None:
    """The same rows as sql_metric_rows, from a tracking server's bulk history endpoint (one request per
    metric and SERVER_BULK_RUNS runs, in parallel); None when `client` does not talk to a tracking server.

    A (run, metric) that reaches the endpoint's 2500-point cap may have come back down-sampled: that
    one is read again through the public API, so every logged point is kept. Raises InternalsChanged
    when the endpoint is gone or answers in another shape, MlflowException when the server fails.
    """
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    host_creds = getattr(store, "get_host_creds", None)
    if host_creds is None or not callable(host_creds):
        return None
    from mlflow.utils.rest_utils import http_request

    run_ids, keys = sorted(set(run_ids)), sorted(set(keys))
    chunks = [run_ids[i:i + SERVER_BULK_RUNS] for i in range(0, len(run_ids), SERVER_BULK_RUNS)]
    requests = [(key, chunk) for key in keys for chunk in chunks]

    def fetch(request: tuple[str, list[str]]) -> list[dict]:
        key, runs = request
        response = http_request(host_creds(), SERVER_BULK_PATH, "GET", raise_on_status=False,
                                params={"run_ids": runs, "metric_key": key, "max_results": SERVER_MAX_POINTS})
        if response.status_code == 404:
            raise InternalsChanged(f"the tracking server has no {SERVER_BULK_PATH} any more")
        if response.status_code != 200:
            from mlflow.exceptions import MlflowException

            raise MlflowException(f"{SERVER_BULK_PATH} answered {response.status_code}: {response.text[:300]}")
        metrics = response.json().get("metrics", [])
        if metrics and not {"run_id", "key", "step", "timestamp", "value"} <= set(metrics[0]):
            raise InternalsChanged(f"{SERVER_BULK_PATH} answers in another shape: {sorted(metrics[0])}")
        return metrics

    with ThreadPoolExecutor(min(SERVER_THREADS, len(requests) or 1)) as pool:
        answers = list(pool.map(fetch, requests))
    rows, counts = [], {}
    for metrics in answers:
        for m in metrics:
            value = float(m["value"])
            rows.append((m["run_id"], m["key"], int(m.get("step", 0)), int(m["timestamp"]), value, value != value))
            counts[m["run_id"], m["key"]] = counts.get((m["run_id"], m["key"]), 0) + 1
    capped = [pair for pair, n in counts.items() if n >= SERVER_MAX_POINTS]
    if capped:  # possibly down-sampled: the whole history through the public API
        dropped = set(capped)
        rows = [r for r in rows if (r[0], r[1]) not in dropped]
        with ThreadPoolExecutor(SERVER_THREADS) as pool:
            for (run_id, key), history in zip(capped, pool.map(lambda p: client.get_metric_history(*p), capped)):
                rows += [(run_id, key, m.step, m.timestamp, m.value, m.value != m.value)
                         for m in sorted(history, key=lambda m: (m.step, m.timestamp))]
    return rows


def page_token(offset: int) -> str | None:
    """MLflow's search_runs page token for a row offset (its SQL store, served or not, pages by offset), so a
    page can be opened directly instead of walking every page before it; None for the first page."""
    if offset <= 0:
        return None
    try:
        from mlflow.utils.search_utils import SearchUtils

        token = SearchUtils.create_page_token(offset)
    except (ImportError, AttributeError) as e:
        raise InternalsChanged(f"MLflow's page tokens moved: {e}") from None
    return token.decode() if isinstance(token, bytes) else token


def _sql_store(client: MlflowClient):
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return store if hasattr(store, "ManagedSessionMaker") else None


def sql_run_count(client: MlflowClient, experiment_ids: Sequence[str], filter_string: str) -> int | None:
    """How many active runs of the experiments match an MLflow filter, counted in SQL with MLflow's own filter
    translation (the one its search_runs uses); None when `client` does not read a SQL store directly (a
    tracking server has no count). Raises MlflowException for an invalid filter, InternalsChanged when moved."""
    store = _sql_store(client)
    if store is None:
        return None
    try:
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import SqlRun
        from mlflow.store.tracking.sqlalchemy_store import _get_sqlalchemy_filter_clauses
        from mlflow.utils.search_utils import SearchUtils
    except ImportError as e:
        raise InternalsChanged(f"MLflow's SQL search moved: {e}") from None
    parsed = SearchUtils.parse_search_filter(filter_string)
    with store.ManagedSessionMaker() as session:
        try:
            attributes, others, datasets = _get_sqlalchemy_filter_clauses(parsed, session, store._get_dialect())
        except (TypeError, ValueError) as e:
            raise InternalsChanged(f"MLflow's SQL filter clauses changed: {e}") from None
        query = sa.select(SqlRun.run_uuid)
        for clause in others:
            query = query.join(clause)
        for clause in datasets:
            query = query.join(clause, SqlRun.run_uuid == clause.c.destination_id)
        query = query.where(SqlRun.experiment_id.in_([int(e) for e in experiment_ids]),
                            SqlRun.lifecycle_stage == "active", *attributes).distinct()
        return session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()


def sql_run_counts(client: MlflowClient) -> dict[str, int] | None:
    """experiment id -> its active runs, in one GROUP BY; None when not a SQL store."""
    store = _sql_store(client)
    if store is None:
        return None
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import SqlRun

    with store.ManagedSessionMaker() as session:
        rows = session.execute(sa.select(SqlRun.experiment_id, sa.func.count()).where(
            SqlRun.lifecycle_stage == "active").group_by(SqlRun.experiment_id)).all()
    return {str(e): n for e, n in rows}


def sql_distinct_values(client: MlflowClient, experiment_id: str, params: Sequence[str],
                        tags_except: Sequence[str]) -> dict[str, list[str]] | None:
    """The values each of `params` takes among an experiment's active runs ("params.<key>" -> values), and
    every tag not starting with one of `tags_except` ("tags.<key>" -> values): a filter's choices over every
    run, not one page's. None when not a SQL store."""
    store = _sql_store(client)
    if store is None:
        return None
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import SqlParam, SqlRun, SqlTag

    found: dict[str, set[str]] = {}
    runs = sa.select(SqlRun.run_uuid).where(SqlRun.experiment_id == int(experiment_id),
                                            SqlRun.lifecycle_stage == "active")
    with store.ManagedSessionMaker() as session:
        for key, value in session.execute(sa.select(SqlParam.key, SqlParam.value).where(
                SqlParam.key.in_(list(params)), SqlParam.run_uuid.in_(runs)).distinct()):
            found.setdefault(f"params.{key}", set()).add(value)
        tags = sa.select(SqlTag.key, SqlTag.value).where(SqlTag.run_uuid.in_(runs),
                                                         *(~SqlTag.key.startswith(p) for p in tags_except))
        for key, value in session.execute(tags.distinct()):
            found.setdefault(f"tags.{key}", set()).add(value)
    return {k: sorted(v) for k, v in found.items()}
