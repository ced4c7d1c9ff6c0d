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

from pipeline import names

STATUS_LABELS = {  # a symbol each (plain Unicode, no emoji font needed), so statuses differ without color too
    "SCHEDULED": "◌ SCHEDULED", "RUNNING": "▶ RUNNING", "FINISHED": "✓ FINISHED", "FAILED": "✗ FAILED",
    "KILLED": "■ KILLED",
}
SWEEP_LABEL = "◇ SWEEP"  # a sweep's parent row in the runs table
KEY_PARAMS = ("dataset", "model", "epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "augment")
NUMERIC_PARAMS = ("epochs", "batch_size", "lr", "weight_decay")  # shown as numbers so they sort as numbers
LEGEND_PARAMS = 2  # distinguishing params named in a legend entry (beyond those the run name already says)
LR_PARAMS = ("lr",)  # params shown with format_lr
FINAL_METRICS = (names.TEST_ACCURACY, names.TEST_F1, names.VAL_ACCURACY, names.VAL_LOSS, names.TRAIN_LOSS)
BASE_COLUMNS = ["run_id", "run_name", "experiment_id", "status", "start_time", "end_time", "train_start",
                "duration_s", "queued_s", "last_update", "lifecycle_stage", "artifact_uri", "user"]


def _seconds(tag: str | None) -> float | None:
    try:
        value = float(tag)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def timing(info, tags: Mapping[str, str], now_s: float) -> tuple[float | None, float | None, float | None]:
    """(training start in unix seconds, training seconds, seconds queued) of one run.

    MLflow's start time is when a queue run was submitted, so the training's own tags are used
    (runboard.train_started/train_ended, written by pipeline.runs.train); a run from before them
    falls back to the process launch, then to MLflow's start and end.
    """
    start = info.start_time / 1000 if info.start_time else None
    end = info.end_time / 1000 if info.end_time else None
    launched = _seconds(tags.get(names.TAG_STARTED))
    train_start = _seconds(tags.get(names.TAG_TRAIN_STARTED)) or launched or start
    # a resumed run is RUNNING again with its last attempt's end time still set: it runs until now
    train_end = _seconds(tags.get(names.TAG_TRAIN_ENDED)) or (now_s if info.status == names.RUNNING else end)
    if info.status == names.SCHEDULED:
        train_start = train_end = None
    duration = train_end - train_start if train_start is not None and train_end is not None else None
    queued = None
    if names.TAG_QUEUED in tags and start is not None:
        waited_until = launched or train_start or (now_s if info.status == names.SCHEDULED else end)
        queued = max(0.0, waited_until - start) if waited_until is not None else None
    return train_start, duration, queued


def runs_frame(runs: Iterable) -> pd.DataFrame:
    """MLflow Run entities as one row each: info columns, then params.*, metrics.*, tags.*.

    `last_update` (ms) is the newest of start, end and latest metric times: it changes whenever a
    run logs something, so it keys caches of that run's data.
    """
    now = time.time()
    rows = []
    for run in runs:
        info, data = run.info, run.data
        stamps = [m.timestamp for m in data._metric_objs] if hasattr(data, "_metric_objs") else []
        train_start, duration, queued = timing(info, data.tags, now)
        rows.append({
            "run_id": info.run_id, "run_name": info.run_name or info.run_id[:8],
            "experiment_id": info.experiment_id, "status": info.status,
            "start_time": info.start_time, "end_time": info.end_time,
            "train_start": train_start * 1000 if train_start is not None else np.nan,
            "duration_s": np.nan if duration is None else duration, "queued_s": np.nan if queued is None else queued,
            "last_update": int(max([info.start_time or 0, info.end_time or 0, *stamps])),
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
    kind = f"tags.{names.TAG_KIND}"
    range_tests = runs[kind].eq(names.KIND_LR_FIND) if kind in runs else pd.Series(False, index=runs.index)
    return runs[~is_sweep(runs) & ~range_tests]


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
    return {"runs": len(children), "ended": ended,
            "live": bool(children["status"].isin(names.ACTIVE).any()),
            "best_test_accuracy": float(scores[best_id]) if best_id is not None else np.nan,
            "best_run": children.loc[best_id, "run_id"] if best_id is not None else None,
            "progress": f"{ended}/{len(children)} ended"}


def expand_sweeps(run_ids: Sequence[str], runs: pd.DataFrame) -> list[str]:
    """`run_ids` with every sweep parent replaced by its runs (a parent has no curves of its own)."""
    parents = set(runs.loc[is_sweep(runs), "run_id"])
    out = []
    for run_id in run_ids:
        out += list(sweep_children(runs, run_id)["run_id"]) if run_id in parents else [run_id]
    return list(dict.fromkeys(out))


def format_lr(value) -> str:
    """A learning rate, one way on every page: 0.03 -> 3.00e-2, as the runs table's number column ("%.2e") draws it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    if not math.isfinite(number):
        return str(value)
    mantissa, exponent = f"{number:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


LR_FORMAT = "%.2e"  # the same, for st.column_config.NumberColumn (sprintf-js writes the exponent unpadded)


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


def runs_table(runs: pd.DataFrame, best_val: pd.Series, mlflow_ui: str, extra: Sequence[str] = ()) -> pd.DataFrame:
    """The runs page's table: one row per run, newest first, with links to the detail page and MLflow.

    The scores people compare on come right after the name; a sweep's parent is a group row: its
    runs' progress in `runs`, its best run's scores in the score columns.
    """
    sweeps = is_sweep(runs)
    table = pd.DataFrame({
        "run_id": runs["run_id"],
        "open": "run_detail?run=" + runs["run_id"],
        "name": runs["run_name"],
        "status": runs["status"].map(lambda s: STATUS_LABELS.get(s, s)).where(~sweeps, SWEEP_LABEL),
        "test acc": runs.get(f"metrics.{names.TEST_ACCURACY}", pd.Series(np.nan, index=runs.index)),
        "test F1": runs.get(f"metrics.{names.TEST_F1}", pd.Series(np.nan, index=runs.index)),
        "best val acc": runs["run_id"].map(best_val),
        "runs": "",
        "start": runs["start_time"].dt.tz_convert(None),  # naive UTC: Arrow warns on tz-aware columns
        "duration_s": runs["duration_s"], "queued_s": runs.get("queued_s", pd.Series(np.nan, index=runs.index)),
    })
    for p in KEY_PARAMS:
        values = runs[f"params.{p}"] if f"params.{p}" in runs else pd.Series("", index=runs.index)
        table[p] = pd.to_numeric(values, errors="coerce") if p in NUMERIC_PARAMS else values.fillna("")
    for column in extra:
        table[column.split(".", 1)[-1]] = runs.get(column)
    for i in np.flatnonzero(sweeps.to_numpy()):
        children = sweep_children(runs, runs["run_id"].iloc[i])
        summary = sweep_summary(children)
        table.iloc[i, table.columns.get_loc("runs")] = f"{summary['runs']} runs · {summary['progress']}"
        table.iloc[i, table.columns.get_loc("duration_s")] = np.nan  # a group, not a training
        if summary["best_run"] is not None:
            best = children[children["run_id"] == summary["best_run"]].index[0]
            for column in ("test acc", "test F1"):
                table.iloc[i, table.columns.get_loc(column)] = table.loc[best, column]
        table.iloc[i, table.columns.get_loc("best val acc")] = children["run_id"].map(best_val).max()
    table["mlflow"] = [mlflow_run_url(mlflow_ui, e, r) for e, r in zip(runs["experiment_id"], runs["run_id"])]
    empty = (["runs"] if not sweeps.any() else []) + (["queued_s"] if table["queued_s"].isna().all() else [])
    table = table.drop(columns=empty)  # no sweep, or no queue run, here: no empty column
    return table.sort_values("start", ascending=False, na_position="first").reset_index(drop=True)


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


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags worth showing: MLflow's bookkeeping and the traceback (shown on its own) left out."""
    hidden = {names.TAG_TRACEBACK, names.TAG_LOG_MODEL_HISTORY, names.TAG_RUN_NAME}
    return {k: v for k, v in sorted(tags.items()) if k not in hidden}


def variants_table(rows: Sequence[Mapping]) -> pd.DataFrame:
    """Original / ONNX / int8 (rows of pipeline.serving.export.variants_of): figures and ratios to the original."""
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
    } for r in rows])
