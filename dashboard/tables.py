"""Plain pandas shaping for the pages: MLflow runs as rows, legends, diff tables, per-class scores.

Nothing here talks to MLflow or Streamlit; store.py hands in what it read, pages show what comes out.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote

import numpy as np
import pandas as pd

from dashboard import formatting, run_search
from pipeline import names
from pipeline.runs import timing as run_timing

STATUS_LABELS = {  # a symbol each (plain Unicode, no emoji font needed), so statuses differ without color too
    "SCHEDULED": "◌ SCHEDULED", "RUNNING": "▶ RUNNING", "FINISHED": "✓ FINISHED", "FAILED": "✗ FAILED",
    "KILLED": "■ KILLED",
}
SWEEP_LABEL = "◇ SWEEP"  # a sweep's parent row in the runs table
FOLD_ICONS = {False: ":material/chevron_right:", True: ":material/expand_more:"}  # a sweep's runs hidden, shown
RUNS_TABLE_FIRST = ("run_id", "sweep", "open", "name", "status", "test acc", "best val acc", "test F1", "model", "lr",
                    "training", "start")  # what a person reads first; the rest follows
KEY_PARAMS = ("dataset", "model", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "augment")
SORT_SOURCES = {"training": "duration_s", "queued": "queued_s"}  # columns shown as text, sorted by number
NUMERIC_PARAMS = ("epochs", "batch_size", "lr", "weight_decay")  # shown as numbers so they sort as numbers
LEGEND_PARAMS = 2  # distinguishing params named in a legend entry (beyond those the run name already says)
LR_PARAMS = ("lr",)  # params shown with format_lr
FINAL_METRICS = (names.TEST_ACCURACY, names.TEST_F1, names.VAL_ACCURACY, names.VAL_LOSS, names.TRAIN_LOSS)
BASE_COLUMNS = ["run_id", "run_name", "experiment_id", "status", "start_time", "end_time", "train_start",
                "duration_s", "queued_s", "stopped_s", "epochs_done", "last_update", "lifecycle_stage", "artifact_uri", "user"]


def timing(info, tags: Mapping[str, str], now_s: float) -> run_timing.Times:
    """One run's training start, training, queued and stopped seconds over all its attempts (MLflow RunInfo + tags)."""
    return run_timing.run_times(info.status, info.start_time / 1000 if info.start_time else None,
                                info.end_time / 1000 if info.end_time else None, tags, now_s)


def epochs_done(metrics: Iterable) -> int:
    """Epochs the run has trained: the step of its latest per-epoch metric (MLflow keeps the highest step)."""
    return max((m.step for m in metrics if m.key in names.EPOCH_METRICS), default=0)


def runs_frame(runs: Iterable) -> pd.DataFrame:
    """MLflow Run entities as one row each: info columns, then params.*, metrics.*, tags.*.

    `last_update` (ms) is the newest of start, end and latest metric times: it changes whenever a
    run logs something, so it keys caches of that run's data.
    """
    now = time.time()
    rows = []
    for run in runs:
        info, data = run.info, run.data
        latest = data._metric_objs if hasattr(data, "_metric_objs") else []  # with their steps and times
        times = timing(info, data.tags, now)
        rows.append({
            "run_id": info.run_id, "run_name": info.run_name or info.run_id[:8],
            "experiment_id": info.experiment_id, "status": info.status,
            "start_time": info.start_time, "end_time": info.end_time,
            "train_start": times.train_start * 1000 if times.train_start is not None else np.nan,
            **{column: np.nan if value is None else value for column, value in (
                ("duration_s", times.training_s), ("queued_s", times.queued_s), ("stopped_s", times.stopped_s))},
            "epochs_done": epochs_done(latest),
            "last_update": int(max([info.start_time or 0, info.end_time or 0, *(m.timestamp for m in latest)])),
            "lifecycle_stage": info.lifecycle_stage, "artifact_uri": info.artifact_uri, "user": info.user_id,
            **{f"params.{k}": v for k, v in data.params.items() if not k.startswith(names.BOOKKEEPING_PREFIX)},
            **{f"metrics.{k}": v for k, v in data.metrics.items()},
            **{f"tags.{k}": v for k, v in data.tags.items()},
        })
    frame = pd.DataFrame(rows, columns=None if rows else BASE_COLUMNS)
    for column in ("start_time", "end_time", "train_start"):
        frame[column] = pd.to_datetime(frame[column], unit="ms", utc=True)
    return frame


def is_sweep(runs: pd.DataFrame) -> pd.Series:
    """True for a sweep's parent: a run that only groups others, never a trained model."""
    column = f"tags.{names.TAG_SWEEP}"
    return runs[column].notna() if column in runs else pd.Series(False, index=runs.index)


def trained(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that train a model: every run but sweep parents and learning-rate range tests (no model)."""
    return runs[~is_sweep(runs) & ~range_tests(runs) & ~audits(runs)]


def audits(runs: pd.DataFrame) -> pd.Series:
    """True for a data audit (pipeline audit): it trains fold models but logs none."""
    kind = f"tags.{names.TAG_KIND}"
    return runs[kind].eq(names.KIND_AUDIT) if kind in runs else pd.Series(False, index=runs.index)


def best_trained(runs: pd.DataFrame) -> str | None:
    """The id of the best trained run among `runs`, by test accuracy (else validation accuracy), the first of
    equals; exported variants are copies of a trained model, not candidates. None when there is no such run."""
    runs = trained(runs)
    export = f"tags.{names.TAG_EXPORT_SOURCE}"
    if export in runs:
        runs = runs[runs[export].isna()]
    scores = pd.Series(np.nan, index=runs.index)
    for metric in (names.TEST_ACCURACY, names.VAL_ACCURACY):
        if f"metrics.{metric}" in runs:
            scores = scores.fillna(pd.to_numeric(runs[f"metrics.{metric}"], errors="coerce"))
    if scores.notna().any():
        return runs.loc[scores.idxmax(), "run_id"]
    return runs["run_id"].iloc[0] if len(runs) else None


def sweep_children(runs: pd.DataFrame, parent_id: str) -> pd.DataFrame:
    """The runs of the sweep `parent_id` among `runs`, in queue order."""
    column = f"tags.{names.TAG_SWEEP_ID}"
    if column not in runs:
        return runs.iloc[0:0]
    children = runs[runs[column] == parent_id]
    return children.sort_values("start_time", kind="stable")


def sweep_summary(children: pd.DataFrame) -> dict:
    """A sweep's group facts: how many runs, how many ended, the best test accuracy and which run got it."""
    ended = int(children["status"].isin(names.ENDED).sum())
    column = f"metrics.{names.TEST_ACCURACY}"
    scores = pd.to_numeric(children[column], errors="coerce") if column in children else pd.Series(dtype=float)
    best_id = scores.idxmax() if scores.notna().any() else None
    running = int(children["status"].eq(names.RUNNING).sum())
    queued = int(children["status"].eq(names.SCHEDULED).sum())
    progress = ", ".join([f"{ended} of {len(children)} ended", *([f"{running} running"] if running else []),
                          *([f"{queued} queued"] if queued else [])])
    return {"runs": len(children), "ended": ended, "running": running, "queued": queued,
            "live": bool(running or queued),
            "best_test_accuracy": float(scores[best_id]) if best_id is not None else np.nan,
            "best_run": children.loc[best_id, "run_id"] if best_id is not None else None,
            "progress": progress}


def study_line(parent: pd.Series, children: pd.DataFrame) -> str:
    """A study's group row: "12/16 trials · 5 pruned · best 0.987" (its page says the same)."""
    pruned_tag = f"tags.{names.TAG_PRUNED}"
    pruned = int(children[pruned_tag].notna().sum()) if pruned_tag in children else 0
    ended = int(children["status"].isin(names.ENDED).sum())
    total = parent.get(f"tags.{names.TAG_STUDY_TRIALS}") or "?"
    best = formatting.score(parent.get(f"metrics.{names.BEST_VALUE}"))
    return f"{ended}/{total} trials · {pruned} pruned · best {best}"


def expand_sweeps(run_ids: Sequence[str], runs: pd.DataFrame) -> list[str]:
    """`run_ids` with every sweep parent replaced by its runs (a parent has no curves of its own)."""
    parents = set(runs.loc[is_sweep(runs), "run_id"])
    out = []
    for run_id in run_ids:
        out += list(sweep_children(runs, run_id)["run_id"]) if run_id in parents else [run_id]
    return list(dict.fromkeys(out))


format_lr = formatting.lr  # the one formatter's; kept under this name for the pages that call it
LR_FORMAT = formatting.LR_FORMAT


def prefixed(frame: pd.DataFrame, prefix: str) -> list[str]:
    return [c for c in frame.columns if c.startswith(prefix)]


def differing(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns whose values are not all the same (missing counts as a value)."""
    return [c for c in columns if c in frame and frame[c].fillna("∅").astype(str).nunique() > 1]


def run_labels(runs: pd.DataFrame, max_params: int = LEGEND_PARAMS) -> dict[str, str]:
    """Legend names: the run name plus the params that tell the selected runs apart; always unique."""
    params = differing(runs, [f"params.{p}" for p in KEY_PARAMS] + prefixed(runs, "params."))
    params = list(dict.fromkeys(params))[:max_params]
    labels = {}
    for _, row in runs.iterrows():
        said = [(p.removeprefix("params."), compact(row[p], p.removeprefix("params."))) for p in params
                if pd.notna(row[p])]
        extra = ", ".join(f"{param}={text}" for param, text in said  # left out: what the run's name already says
                          if text not in str(row["run_name"]) and f"{param}=" not in str(row["run_name"]))
        labels[row["run_id"]] = f"{row['run_name']} ({extra})" if extra else row["run_name"]
    seen: dict[str, int] = {}
    for run_id, label in labels.items():
        seen[label] = seen.get(label, 0) + 1
    return {run_id: f"{label} [{run_id[:6]}]" if seen[label] > 1 else label for run_id, label in labels.items()}


def compact(value, param: str = "") -> str:
    """A param as short text: 0.000532215 -> 0.000532, 64 -> 64, cnn -> cnn; a learning rate as format_lr."""
    if param in LR_PARAMS:
        return format_lr(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number.is_integer() or not math.isfinite(number):
        return str(value)
    return f"{number:.3g}"


def best(history: pd.DataFrame, key: str, mode: str = "max") -> pd.Series:
    """Per run, the best value a metric reached (max or min over its history)."""
    rows = history[(history["key"] == key) & np.isfinite(history["value"])]
    grouped = rows.groupby("run_id")["value"]
    return grouped.max() if mode == "max" else grouped.min()


def steps_per_epoch(runs: pd.DataFrame) -> dict[str, float]:
    """Optimizer steps per epoch, as each run's trainer logged them."""
    column = f"tags.{names.TAG_STEPS_PER_EPOCH}"
    if column not in runs:
        return {}
    per_epoch = pd.to_numeric(runs[column], errors="coerce")
    return {r: float(v) for r, v in zip(runs["run_id"], per_epoch) if np.isfinite(v) and v > 0}


def runs_table(runs: pd.DataFrame, best_val: pd.Series, mlflow_ui: str, extra: Sequence[str] = (),
               unfolded: Iterable[str] = (), sort: tuple[str, bool] = ("start", True)) -> pd.DataFrame:
    """The runs table of the Runs page and of a sweep's page: one row per run, sorted by `sort` (a column,
    descending), newest first by default and among equals, blanks last, with links.

    The scores people compare on come right after the name. A sweep's parent is a group row: its best
    run's scores, and in `sweep` a fold button ("> 3 runs"); its runs sit under it, shown only when
    the parent is in `unfolded` (as MLflow's UI nests child runs). Durations are text, as every page writes them.
    """
    sweeps = is_sweep(runs)
    table = pd.DataFrame({
        "run_id": runs["run_id"],
        "sweep": None,
        "open": "run_detail?run=" + runs["run_id"],
        "name": runs["run_name"],
        "status": runs["status"].map(lambda s: STATUS_LABELS.get(s, s)).where(~sweeps, SWEEP_LABEL),
        "test acc": runs.get(f"metrics.{names.TEST_ACCURACY}", pd.Series(np.nan, index=runs.index)),
        "best val acc": runs["run_id"].map(best_val),
        "test F1": runs.get(f"metrics.{names.TEST_F1}", pd.Series(np.nan, index=runs.index)),
        "start": runs["start_time"].dt.tz_convert(None),  # naive UTC: Arrow warns on tz-aware columns
        "training": runs["duration_s"].map(formatting.duration).where(~sweeps, None),  # a group, not a training
        "queued": runs.get("queued_s", pd.Series(np.nan, index=runs.index)).map(
            lambda s: None if pd.isna(s) else formatting.duration(s)),
        "note": runs.get(run_search.NOTE_COLUMN, pd.Series(None, index=runs.index, dtype=object)).map(
            run_search.short_note),
    }).astype({"sweep": object})
    for p in KEY_PARAMS:
        values = runs[f"params.{p}"] if f"params.{p}" in runs else pd.Series(None, index=runs.index, dtype=object)
        table[p] = pd.to_numeric(values, errors="coerce") if p in NUMERIC_PARAMS else values
    for column in extra:
        values = runs.get(column, pd.Series(None, index=runs.index, dtype=object))
        numbers = pd.to_numeric(values, errors="coerce")  # MLflow keeps params as text: 10 sorts after 9
        table[column.split(".", 1)[-1]] = numbers if numbers.notna().sum() == values.notna().sum() else values
    unfolded = set(unfolded)
    for i in np.flatnonzero(sweeps.to_numpy()):
        parent = runs["run_id"].iloc[i]
        children = sweep_children(runs, parent)
        summary = sweep_summary(children)
        table.iloc[i, table.columns.get_loc("sweep")] = f"{FOLD_ICONS[parent in unfolded]} {summary['runs']} runs"
        if runs.iloc[i].get(f"tags.{names.TAG_KIND}") == names.KIND_STUDY:
            table.iloc[i, table.columns.get_loc("name")] += f" · {study_line(runs.iloc[i], children)}"
        if summary["best_run"] is not None:
            best = children[children["run_id"] == summary["best_run"]].index[0]
            for column in ("test acc", "test F1"):
                table.iloc[i, table.columns.get_loc(column)] = table.loc[best, column]
        table.iloc[i, table.columns.get_loc("best val acc")] = children["run_id"].map(best_val).max()
    table["mlflow"] = [mlflow_run_url(mlflow_ui, e, r) for e, r in zip(runs["experiment_id"], runs["run_id"])]
    table = table.drop(columns=["queued"] if table["queued"].isna().all() else [])  # no queue run here
    if table.loc[~sweeps, "note"].isna().all():  # a sweep's own note (Runboard's) says what its row already says
        table = table.drop(columns=["note"])
    table = table[[*RUNS_TABLE_FIRST, *(c for c in table.columns if c not in RUNS_TABLE_FIRST)]]
    table = table.sort_values("start", ascending=False, na_position="first")
    if sort[0] in table and (sort[0], sort[1]) != ("start", True):
        source = SORT_SOURCES.get(sort[0])  # a duration is sorted by its seconds, not its text
        key = (runs[source].where(~sweeps) if source in runs else table[sort[0]]).reindex(table.index)
        table = table.loc[key.sort_values(ascending=not sort[1], na_position="last", kind="stable").index]
    return nested(table, runs[f"tags.{names.TAG_SWEEP_ID}"] if f"tags.{names.TAG_SWEEP_ID}" in runs else None,
                  unfolded).reset_index(drop=True)


def nested(table: pd.DataFrame, parent_of: pd.Series | None, unfolded: set[str]) -> pd.DataFrame:
    """`table` with each sweep's runs moved under its parent row (in queue order), or left out while it is
    folded; a run whose parent is not in the table stays a row of its own."""
    if parent_of is None:
        return table
    parents = parent_of.reindex(table.index)
    shown = set(table["run_id"])
    children = parents.notna() & parents.isin(shown)
    order = []
    for index in table.index[~children]:
        order.append(index)
        run_id = table.at[index, "run_id"]
        if run_id in unfolded:
            order += sorted(table.index[children & (parents == run_id)], key=lambda i: table.at[i, "start"])
    out = table.loc[order]
    inner = out.index.isin(table.index[children])
    out.loc[inner, "name"] = "└ " + out.loc[inner, "name"]
    return out


def range_tests(runs: pd.DataFrame) -> pd.Series:
    """True for a learning-rate range test (pipeline lr-find): a short run with a suggestion, no model."""
    kind = f"tags.{names.TAG_KIND}"
    return runs[kind].eq(names.KIND_LR_FIND) if kind in runs else pd.Series(False, index=runs.index)


def range_test_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Range tests as what they are: the suggested lr for a dataset and model, newest first."""
    column = f"metrics.{names.SUGGESTED_LR}"
    table = pd.DataFrame({
        "open": "run_detail?run=" + runs["run_id"], "name": runs["run_name"],
        "status": runs["status"].map(lambda s: STATUS_LABELS.get(s, s)),
        "suggested lr": runs[column] if column in runs else np.nan,
        "dataset": runs.get("params.dataset"), "model": runs.get("params.model"),
        "batch_size": pd.to_numeric(runs.get("params.batch_size"), errors="coerce"),
        "start": runs["start_time"].dt.tz_convert(None)})
    return table.sort_values("start", ascending=False).reset_index(drop=True)


def mlflow_run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_compare_url(base: str, run_ids: Sequence[str], experiment_ids: Sequence[str]) -> str:
    """mlflow ui's own comparison of these runs (its route takes JSON lists)."""
    runs, experiments = (quote(json.dumps(list(ids), separators=(",", ":"))) for ids in (run_ids, experiment_ids))
    return f"{base}/#/compare-runs?runs={runs}&experiments={experiments}"


def diff_table(runs: pd.DataFrame, best_val: pd.Series | None = None,
               metrics: Sequence[str] = FINAL_METRICS) -> pd.DataFrame:
    """One row per run: only the params that differ, then the final metrics beside them."""
    params = differing(runs, prefixed(runs, "params."))
    table = pd.DataFrame({"run": runs["run_name"].to_numpy(), "status": runs["status"].to_numpy()},
                         index=runs["run_id"].to_numpy())
    for p in params:
        param = p.removeprefix("params.")
        table[param] = runs[p].map(lambda v: compact(v, param), na_action="ignore").to_numpy()
    if best_val is not None:
        table[f"best {names.VAL_ACCURACY}"] = runs["run_id"].map(best_val).to_numpy()
    for m in metrics:
        if f"metrics.{m}" in runs:
            table[m] = runs[f"metrics.{m}"].to_numpy()
    table.index.name = "run_id"
    return table


def per_class_table(per_class: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """per_class.json as rows (label, precision, recall, f1, support), weakest F1 first."""
    rows = [{"label": str(label), **{k: scores.get(k, np.nan) for k in ("precision", "recall", "f1", "support")}}
            for label, scores in per_class.items()]
    table = pd.DataFrame(rows, columns=["label", "precision", "recall", "f1", "support"])
    return table.sort_values(["f1", "label"], ascending=[True, True]).reset_index(drop=True)


def history_csv(history: pd.DataFrame, labels: Mapping[str, str]) -> bytes:
    """Every logged point (not the downsampled drawing) as CSV, with run names."""
    out = history[["run_id", "key", "step", "timestamp", "value"]].copy()
    out.insert(1, "run", out["run_id"].map(labels))
    return out.sort_values(["run_id", "key", "step", "timestamp"]).to_csv(index=False).encode()


format_duration = formatting.duration  # the one formatter's; kept under this name for the pages that call it


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags worth showing: MLflow's bookkeeping and the traceback (shown on its own) left out."""
    hidden = {names.TAG_TRACEBACK, names.TAG_LOG_MODEL_HISTORY, names.TAG_RUN_NAME}
    return {k: v for k, v in sorted(tags.items()) if k not in hidden}


def variants_table(rows: Sequence[Mapping]) -> pd.DataFrame:
    """Original / ONNX / int8 / pruned (rows of pipeline.serving.export.variants_of): figures and ratios to the
    original; a pruned variant adds its sparsity, parameters, deflated size and accuracy-drop flag."""
    if not rows:
        return pd.DataFrame()
    base = rows[0]

    def ratio(row, key):
        value, ref = row.get(key), base.get(key)
        return value / ref if value is not None and ref else None

    return pd.DataFrame([{
        "variant": r["variant"], "test accuracy": r.get(names.TEST_ACCURACY),
        "agreement": r.get(names.AGREEMENT), "max prob. diff": r.get(names.MAX_PROBABILITY_DIFF),
        "max logit diff": r.get(names.MAX_LOGIT_DIFF),
        "size (MB)": r[names.MODEL_SIZE] / 1e6 if r.get(names.MODEL_SIZE) else None,
        "size ×": ratio(r, names.MODEL_SIZE),
        "1 image p50 (ms)": r.get(names.LATENCY_1_P50), "1 image p95 (ms)": r.get(names.LATENCY_1_P95),
        "1 image ×": ratio(r, names.LATENCY_1_P50),
        "64 images p50 (ms)": r.get(names.LATENCY_64_P50), "64 images p95 (ms)": r.get(names.LATENCY_64_P95),
        "64 images ×": ratio(r, names.LATENCY_64_P50),
        "run": f"run_detail?run={r['run_id']}" if r.get("run_id") else None,
        # pruned variants (serving/prune.py): what was removed, and the deflated file where zeros pay off
        "sparsity": r.get(names.SPARSITY), "parameters": r.get(names.PARAMETERS),
        "deflated (MB)": r[names.COMPRESSED_SIZE] / 1e6 if r.get(names.COMPRESSED_SIZE) else None,
        "flag": r.get("flag") or None,
    } for r in rows])
