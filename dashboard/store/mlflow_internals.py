"""The one place that uses MLflow's private internals, so an MLflow upgrade that moves them breaks here only.

Two fast paths for many runs' metric histories: on a SQL store, one query on MLflow's SQL models;
against a tracking server, the bulk endpoint MLflow's own UI charts read. Each also reads a bounded
sample of every history (what Compare draws first): sampled in SQL on a SQL store, by the server's
bulk-interval endpoint over REST. tests/dashboard/test_mlflow_internals.py (SQL) and tests/cluster/
test_server_store.py, test_server_sampled.py (server) fail loudly when either stops working; the
dashboard then still works, through MLflow's public API, only slower.
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


def _server_requests(client: MlflowClient, run_ids: Sequence[str], keys: Sequence[str]):
    """(the server's credentials callable, one (metric, SERVER_BULK_RUNS run ids) per request), or (None, [])
    when `client` does not talk to a tracking server."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    host_creds = getattr(store, "get_host_creds", None)
    if host_creds is None or not callable(host_creds):
        return None, []
    run_ids, keys = sorted(set(run_ids)), sorted(set(keys))
    chunks = [run_ids[i:i + SERVER_BULK_RUNS] for i in range(0, len(run_ids), SERVER_BULK_RUNS)]
    return host_creds, [(key, chunk) for key in keys for chunk in chunks]


def server_metric_rows(client: MlflowClient, run_ids: Sequence[str], keys: Sequence[str]) -> list[tuple] | None:
    """The same rows as sql_metric_rows, from a tracking server's bulk history endpoint (one request per
    metric and SERVER_BULK_RUNS runs, in parallel); None when `client` does not talk to a tracking server.

    A (run, metric) that reaches the endpoint's 2500-point cap may have come back down-sampled: that
    one is read again through the public API, so every logged point is kept. Raises InternalsChanged
    when the endpoint is gone or answers in another shape, MlflowException when the server fails.
    """
    host_creds, requests = _server_requests(client, run_ids, keys)
    if host_creds is None:
        return None
    rows = _bulk_interval_rows(host_creds, requests, SERVER_MAX_POINTS)
    counts = {}
    for row in rows:
        counts[row[0], row[1]] = counts.get((row[0], row[1]), 0) + 1
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


def _bulk_interval_rows(host_creds, requests: list[tuple[str, list[str]]], max_results: int,
                        step_range: tuple[int, int] | None = None) -> list[tuple]:
    """(run_id, key, step, timestamp, value, is_nan) rows of the bulk-interval endpoint, one request per
    (metric, runs) in parallel; at most max_results rows per run, in [start, end] steps when given."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.rest_utils import http_request

    def fetch(request: tuple[str, list[str]]) -> list[dict]:
        key, runs = request
        params = {"run_ids": runs, "metric_key": key, "max_results": max_results}
        if step_range is not None:
            params |= {"start_step": int(step_range[0]), "end_step": int(step_range[1])}
        response = http_request(host_creds(), SERVER_BULK_PATH, "GET", raise_on_status=False, params=params)
        if response.status_code == 404:
            raise InternalsChanged(f"the tracking server has no {SERVER_BULK_PATH} any more")
        if response.status_code != 200:
            raise MlflowException(f"{SERVER_BULK_PATH} answered {response.status_code}: {response.text[:300]}")
        metrics = response.json().get("metrics", [])
        if metrics and not {"run_id", "key", "step", "timestamp", "value"} <= set(metrics[0]):
            raise InternalsChanged(f"{SERVER_BULK_PATH} answers in another shape: {sorted(metrics[0])}")
        return metrics

    with ThreadPoolExecutor(min(SERVER_THREADS, len(requests) or 1)) as pool:
        answers = list(pool.map(fetch, requests))
    rows = []
    for metrics in answers:
        for m in metrics:
            value = float(m["value"])
            rows.append((m["run_id"], m["key"], int(m.get("step", 0)), int(m["timestamp"]), value, value != value))
    return rows


# ---- sampled histories: a bounded number of points per (run, metric), its spikes kept ----------------------

SQLITE_STEP_INDEX = "index_metrics_run_uuid_key_step"  # MLflow's (run_uuid, key, step) index on metrics
SAMPLED_PAIRS = 1000  # (run, metric) pairs per sampling statement (SQLite: 5 parameters each, 32766 at most)
SAMPLED_THREADS = 4   # sampling statements at once, each on its own connection: a scan takes one core
SAMPLED_MIN_RUNS = 8  # fewer runs than this per statement cost more in round trips than they save


def envelope_buckets(points: int) -> int:
    """Step ranges a history of more than `points` points is cut into: a low and a high row each, plus the
    first and the last point, make at most `points`."""
    return max(1, (points - 2) // 2)


def sql_sampled_metric_rows(client: MlflowClient, run_ids: Sequence[str], keys: Sequence[str], points: int,
                            step_range: tuple[int, int] | None = None, portable: bool = False,
                            ) -> tuple[list[tuple], dict[tuple[str, str], int]] | None:
    """Rows as sql_metric_rows, at most `points` per (run, metric), and how many points each logged (in
    `step_range` when given); None when `client` does not read a SQL store directly.

    A (run, metric) of at most `points` points comes back whole. A longer one is cut into
    envelope_buckets(points) equal step ranges between its first and last step; each range gives the rows
    of its lowest and its highest value (NaN left out), and the first and the last point are kept, so every
    spike and dip survives. The work stays in the database: on SQLite two index range scans per range
    (its planner would sort every point to group them), elsewhere (or `portable`) window functions.
    """
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if not hasattr(store, "ManagedSessionMaker"):
        return None
    try:
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import SqlMetric

        m = SqlMetric.__table__.c
        columns = (m.run_uuid, m.key, m.step, m.timestamp, m.value, m.is_nan)
        has_index = any(i.name == SQLITE_STEP_INDEX for i in SqlMetric.__table__.indexes)
    except (ImportError, AttributeError) as e:
        raise InternalsChanged(f"MLflow's SQL metric model moved: {e}") from None
    run_ids, keys = sorted(set(run_ids)), sorted(set(keys))
    in_range = [] if step_range is None else [m.step >= int(step_range[0]), m.step <= int(step_range[1])]
    on_sqlite = getattr(store, "db_type", None) == "sqlite" and not portable
    if on_sqlite and not has_index:
        raise InternalsChanged(f"MLflow's metrics table has no {SQLITE_STEP_INDEX} any more")
    size = min(BULK_RUNS, max(SAMPLED_MIN_RUNS, -(-len(run_ids) // SAMPLED_THREADS)))

    def sample(runs: list[str]) -> tuple[list[tuple], dict[tuple[str, str], int]]:
        rows, envelope = [], _sqlite_envelope if on_sqlite else _window_envelope
        with store.ManagedSessionMaker() as session:
            if on_sqlite:
                bounds = _sqlite_bounds(session, [(run, key) for run in runs for key in keys], step_range)
            else:
                bounds = session.execute(
                    sa.select(m.run_uuid, m.key, sa.func.min(m.step), sa.func.max(m.step), sa.func.count())
                    .where(m.run_uuid.in_(runs), m.key.in_(keys), *in_range).group_by(m.run_uuid, m.key)).all()
            whole = [(run, key) for run, key, _, _, n in bounds if n <= points]
            long = [(run, key, int(lo), int(hi)) for run, key, lo, hi, n in bounds if n > points]
            for j in range(0, len(whole), SAMPLED_PAIRS):
                pairs = sa.tuple_(m.run_uuid, m.key).in_(whole[j:j + SAMPLED_PAIRS])
                rows += session.execute(sa.select(*columns).where(pairs, *in_range).order_by(m.step, m.timestamp)).all()
            for j in range(0, len(long), SAMPLED_PAIRS):
                rows += envelope(session, long[j:j + SAMPLED_PAIRS], envelope_buckets(points), in_range)
        return rows, {(run, key): int(n) for run, key, _, _, n in bounds}

    rows, logged = [], {}
    with ThreadPoolExecutor(SAMPLED_THREADS) as pool:  # SQLite lets go of the GIL while it scans
        for part, counts in pool.map(sample, [run_ids[i:i + size] for i in range(0, len(run_ids), size)]):
            rows += part
            logged |= counts
    return rows, logged


def _sqlite_bounds(session, pairs: list[tuple[str, str]], step_range: tuple[int, int] | None) -> list[tuple]:
    """(run, key, first step, last step, points) of the pairs that logged any on SQLite: two index seeks and a
    count of index entries per pair (a GROUP BY over the same index takes 3x as long)."""
    import sqlalchemy as sa

    inside = "" if step_range is None else " AND step >= :start AND step <= :end"
    rows = f"FROM metrics INDEXED BY {SQLITE_STEP_INDEX} WHERE run_uuid = p.r AND key = p.k{inside}"
    found = []
    for i in range(0, len(pairs), SAMPLED_PAIRS):
        chunk = pairs[i:i + SAMPLED_PAIRS]
        params = {name: v for n, (run, key) in enumerate(chunk) for name, v in ((f"r{n}", run), (f"k{n}", key))}
        if step_range is not None:
            params |= {"start": int(step_range[0]), "end": int(step_range[1])}
        values = ", ".join(f"(:r{n}, :k{n})" for n in range(len(chunk)))
        found += session.execute(sa.text(
            f"WITH p(r, k) AS (VALUES {values}) SELECT * FROM (SELECT r, k, (SELECT min(step) {rows}) AS lo, "
            f"(SELECT max(step) {rows}), (SELECT count(*) {rows}) FROM p) WHERE lo IS NOT NULL"), params).all()
    return found


def _sqlite_envelope(session, pairs: list[tuple[str, str, int, int]], buckets: int, in_range: list) -> list[tuple]:
    """Envelope rows of (run, key, first step, last step) pairs on SQLite: per step range the rowids of its
    lowest and highest value (SQLite's min()/max() take the other columns from that row), then those rows.
    The pairs' first and last steps already lie in the step range, so in_range is not needed here."""
    import sqlalchemy as sa

    values, params = [], {}
    for n, (run, key, lo, hi) in enumerate(pairs):
        values.append(f"(:r{n}, :k{n}, :lo{n}, :hi{n}, :nb{n})")
        params |= {f"r{n}": run, f"k{n}": key, f"lo{n}": lo, f"hi{n}": hi, f"nb{n}": min(buckets, hi - lo + 1)}
    pair_rows = f"FROM metrics INDEXED BY {SQLITE_STEP_INDEX} WHERE run_uuid = p.r AND key = p.k"
    extreme = (f"SELECT (SELECT id FROM (SELECT rowid AS id, {{}}(value) {pair_rows.replace('p.', 'b.')} "
               "AND step >= b.s0 AND step < b.s1 AND is_nan = 0)) FROM b")
    statement = f"""
        WITH RECURSIVE p(r, k, lo, hi, nb) AS (VALUES {', '.join(values)}),
        j(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM j WHERE n + 1 < {int(buckets)}),
        b(r, k, s0, s1) AS (  -- range n holds steps lo + ceil(n * span / nb) up to the next range's first
            SELECT r, k, lo + (n * (hi - lo + 1) + nb - 1) / nb, lo + ((n + 1) * (hi - lo + 1) + nb - 1) / nb
            FROM p CROSS JOIN j WHERE n < nb),
        picked(id) AS ({extreme.format('min')} UNION {extreme.format('max')}
            UNION SELECT (SELECT rowid {pair_rows} AND step = p.lo ORDER BY timestamp LIMIT 1) FROM p
            UNION SELECT (SELECT rowid {pair_rows} AND step = p.hi ORDER BY timestamp DESC LIMIT 1) FROM p)
        SELECT run_uuid, key, step, timestamp, value, is_nan FROM metrics
        WHERE rowid IN (SELECT id FROM picked) ORDER BY step, timestamp"""
    return session.execute(sa.text(statement), params).all()


def _window_envelope(session, pairs: list[tuple[str, str, int, int]], buckets: int, in_range: list) -> list[tuple]:
    """The same envelope rows with window functions: any SQL store (PostgreSQL, MySQL 8, SQLite)."""
    import sqlalchemy as sa
    from mlflow.store.tracking.dbmodels.models import SqlMetric

    m = SqlMetric.__table__.c
    whole_run = dict(partition_by=[m.run_uuid, m.key])
    lo, hi = sa.func.min(m.step).over(**whole_run), sa.func.max(m.step).over(**whole_run)
    ranges = sa.case((hi - lo + 1 < buckets, hi - lo + 1), else_=buckets)
    within = sa.select(m.run_uuid, m.key, m.step, m.timestamp, m.value, m.is_nan, lo.label("lo"),
                       (hi - lo + 1).label("span"), ranges.label("nb")).where(
        sa.tuple_(m.run_uuid, m.key).in_([(p[0], p[1]) for p in pairs]), *in_range).subquery()
    w = within.c
    bucket, pair = [w.run_uuid, w.key, (w.step - w.lo) * w.nb // w.span], [w.run_uuid, w.key]
    ranked = sa.select(
        w.run_uuid, w.key, w.step, w.timestamp, w.value, w.is_nan,
        sa.func.row_number().over(partition_by=bucket, order_by=[w.is_nan, w.value, w.step]).label("low"),
        sa.func.row_number().over(partition_by=bucket, order_by=[w.is_nan, w.value.desc(), w.step]).label("high"),
        sa.func.row_number().over(partition_by=pair, order_by=[w.step, w.timestamp]).label("first"),
        sa.func.row_number().over(partition_by=pair, order_by=[w.step.desc(), w.timestamp.desc()]).label("last"),
    ).subquery()
    r = ranked.c
    kept = sa.or_(sa.and_(sa.or_(r.low == 1, r.high == 1), r.is_nan == sa.false()), r.first == 1, r.last == 1)
    return session.execute(sa.select(r.run_uuid, r.key, r.step, r.timestamp, r.value, r.is_nan).where(kept)
                           .order_by(r.step, r.timestamp)).all()


def server_sampled_metric_rows(client: MlflowClient, run_ids: Sequence[str], keys: Sequence[str], points: int,
                               step_range: tuple[int, int] | None = None) -> list[tuple] | None:
    """Rows as server_metric_rows, at most `points` per (run, metric), sampled by the tracking server; None
    when `client` does not talk to one.

    The server's bulk-interval endpoint (what MLflow's own charts read) keeps the first and the last point
    and evenly spaced rows between them: a spike or a dip between two samples can be missed, and it does not
    say how many points were logged. Nothing over REST finds a history's extremes without reading every
    point: a narrower `step_range` samples that stretch densely, and a full read keeps every point.
    """
    host_creds, requests = _server_requests(client, run_ids, keys)
    if host_creds is None:
        return None
    return _bulk_interval_rows(host_creds, requests, min(points, SERVER_MAX_POINTS), step_range)


def client_as(uri: str, username: str, password: str) -> MlflowClient:
    """A client of the tracking server `uri` whose every tracking and registry call (the bulk reads above
    included) carries this person's login. MLflow's own clients read the login from the process environment,
    which every browser session of the dashboard shares; artifact files still travel with the process's login.
    """
    from mlflow.store.model_registry.rest_store import RestStore as RegistryStore
    from mlflow.store.tracking.rest_store import RestStore as TrackingStore
    from mlflow.tracking._model_registry.client import ModelRegistryClient
    from mlflow.tracking._tracking_service.client import TrackingServiceClient
    from mlflow.utils.credentials import get_default_host_creds

    def creds():
        host = get_default_host_creds(uri)
        host.username, host.password = username, password
        return host

    class Tracking(TrackingServiceClient):
        store = TrackingStore(creds)

    class Registry(ModelRegistryClient):
        store = RegistryStore(creds)

    client = MlflowClient(uri)
    client._tracking_client = Tracking(uri)
    client._registry_client_lazy = Registry(uri, uri)
    return client
