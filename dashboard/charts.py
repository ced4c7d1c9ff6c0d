"""Plotly figures from plain data (DataFrames, arrays, dicts): testable without Streamlit or MLflow.

Curves are drawn from at most MAX_POINTS points per trace (min and max of each bucket, so spikes
survive); smoothing runs on the full series before that. Colors come from `run_colors` so that a
run has the same color in every chart of a page.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from scipy.signal import lfilter  # scikit-learn's dependency; imported here, not on the first smoothed chart

from pipeline import names
from pipeline.training.metrics import display_order

MAX_POINTS = 2000        # points per drawn trace: enough for any screen, light for 50 runs
TEXT_MAX_CLASSES = 30    # above this, cell numbers are unreadable: hover only
WEBGL_ABOVE = 20_000     # total drawn points above which traces switch to WebGL
LEGEND_CHARS_PER_ROW = 110  # legend text that fits one row above a chart (a half-width chart is ~700 px)
LEGEND_LABEL_CHARS = 32     # longer legend names are cut at a word: the curves' hover keeps the whole name
SMOOTH_MIN_POINTS = 30   # shorter per-epoch series are drawn raw: an EMA of a few points lags far behind them
PALETTE = px.colors.qualitative.Plotly + px.colors.qualitative.Dark24 + px.colors.qualitative.Light24
CORRECT_SCALE = [[0.0, "#e5f5e0"], [1.0, "#00441b"]]   # the diagonal, in greens
MISTAKE_SCALE = [[0.0, "#fcbba1"], [1.0, "#99000d"]]   # mistakes: even a single one is clearly red
GOOD_BAD = [[0.0, "#c0392b"], [0.5, "#f7f7f7"], [1.0, "#1e8449"]]  # red = worse, green = better
X_AXES = ("step", "epoch", "relative time")


def run_colors(run_ids: Sequence[str]) -> dict[str, str]:
    """One color per run, by position, so every chart of a page agrees."""
    colors = list(dict.fromkeys(PALETTE))
    extra = [f"hsl({(i * 137.508) % 360:.0f},65%,45%)" for i in range(max(0, len(run_ids) - len(colors)))]
    return {run_id: (colors + extra)[i] for i, run_id in enumerate(run_ids)}


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing); weight 0 returns the input."""
    values = np.asarray(values, dtype=float)
    if weight <= 0 or len(values) == 0:
        return values
    weight = min(weight, 0.999)
    smoothed = lfilter([1 - weight], [1, -weight], values)
    return smoothed / (1 - weight ** np.arange(1, len(values) + 1))


def downsample(y: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices keeping the first, the last, and the min and max of each of max_points/2 buckets."""
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    size = -(-n // max(1, max_points // 2))         # points per bucket, rounded up
    rows = -(-n // size)
    low, high = np.full(rows * size, np.inf), np.full(rows * size, -np.inf)  # padding never wins
    low[:n] = high[:n] = y
    offsets = np.arange(rows) * size
    lowest = offsets + low.reshape(rows, size).argmin(axis=1)
    highest = offsets + high.reshape(rows, size).argmax(axis=1)
    return np.unique(np.concatenate([[0, n - 1], lowest, highest]))


def with_x(history: pd.DataFrame, axis: str, steps_per_epoch: Mapping[str, float] | None = None,
           start_ms: Mapping[str, float] | None = None) -> tuple[pd.DataFrame, str]:
    """`history` (run_id, key, step, timestamp, value) plus an `x` column for `axis`, and its title.

    Epoch metrics are logged at step = epoch; per-step metrics are turned into fractional epochs
    with the run's steps per epoch. Relative time counts from the run's start.
    """
    if axis not in X_AXES:
        raise ValueError(f"x axis must be one of {', '.join(X_AXES)}, got {axis!r}")
    out = history.copy()
    if axis == "step":
        out["x"] = out["step"].astype(float)
        return out, "step"
    if axis == "epoch":
        per_epoch = out["run_id"].map(steps_per_epoch or {}).astype(float)
        is_step_metric = out["key"].map(names.is_per_step).astype(bool) & per_epoch.notna() & (per_epoch > 0)
        out["x"] = np.where(is_step_metric, out["step"] / per_epoch, out["step"]).astype(float)
        return out, "epoch"
    start = out["run_id"].map(start_ms or {})
    start = start.fillna(out.groupby("run_id")["timestamp"].transform("min"))
    seconds = (out["timestamp"] - start.astype(float)) / 1000
    scale, unit = (3600, "h") if seconds.max() > 7200 else (60, "min") if seconds.max() > 120 else (1, "s")
    out["x"] = seconds / scale
    return out, f"relative time ({unit})"


def _smoothed(metric: str, points: int, smoothing: float) -> bool:
    return smoothing > 0 and (names.is_per_step(metric) or points >= SMOOTH_MIN_POINTS)


def left_raw(history: pd.DataFrame, metrics: Sequence[str], smoothing: float) -> list[str]:
    """The metrics that a smoothing weight leaves as logged in every run: short per-epoch series."""
    if smoothing <= 0:
        return []
    finite = history[np.isfinite(history["value"])]
    points = finite.groupby(["key", "run_id"]).size()
    return [m for m in metrics if m in points and not any(_smoothed(m, n, smoothing) for n in points[m])]


def smoothing_note(raw: Sequence[str]) -> str:
    """Why the smoothing slider leaves these curves alone, for beside the slider."""
    listed = ", ".join(raw)
    return (f"Smoothing leaves {listed} as logged: one point an epoch, fewer than {SMOOTH_MIN_POINTS} points, which "
            "an average would only drag behind the real values. It smooths per-step curves and longer series.")


def short_labels(labels: Mapping[str, str], max_chars: int = LEGEND_LABEL_CHARS) -> dict[str, str]:
    """Legend names cut at a word to `max_chars` ("sweep-03 lr=0.03 batch_size=64…"); a name whose cut
    would read like another run's stays whole."""
    def cut(label: str) -> str:
        if len(label) <= max_chars:
            return label
        head = label[:max_chars].rsplit(" ", 1)[0] if " " in label[:max_chars] else label[:max_chars - 1]
        head = head.rstrip(" ,(")
        return head + (", …)" if head.count("(") > head.count(")") else "…")  # "koi (model=cnn, …)"

    short = {run_id: cut(label) for run_id, label in labels.items()}
    seen: dict[str, int] = {}
    for text in short.values():
        seen[text] = seen.get(text, 0) + 1
    return {run_id: text if seen[text] == 1 else labels[run_id] for run_id, text in short.items()}


def _legend_rows(texts: Sequence[str], chars_per_row: int) -> int:
    return -(-sum(len(t) + 6 for t in texts) // chars_per_row) if texts else 0


def legend_figure(colors: Mapping[str, str], labels: Mapping[str, str]) -> go.Figure:
    """One legend for a grid of curves (draw them with legend=False): the runs' colors and short names,
    full width above the grid, where no chart's tool bar covers it."""
    short = short_labels(labels)
    traces = [dict(type="scatter", x=[None], y=[None], mode="lines", name=short.get(run_id, run_id[:8]),
                   line=dict(color=color, width=3), hoverinfo="skip") for run_id, color in colors.items()]
    rows = _legend_rows([t["name"] for t in traces], 2 * LEGEND_CHARS_PER_ROW)  # the page's full width
    layout = dict(height=8 + 22 * rows, margin=dict(l=0, r=0, t=0, b=0), showlegend=True,
                  xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="rgba(0,0,0,0)",
                  legend=dict(font=dict(size=12), orientation="h", x=0, xanchor="left", y=1, yanchor="top",
                              itemclick=False, itemdoubleclick=False))
    return go.Figure(data=traces, layout=layout)


def metric_figure(history: pd.DataFrame, metric: str, colors: Mapping[str, str], labels: Mapping[str, str],
                  smoothing: float = 0.0, log_y: bool = False, x_title: str = "step",
                  max_points: int = MAX_POINTS, legend: bool = True) -> go.Figure:
    """Overlaid curves of one metric, one trace per run (raw faint behind when smoothed).

    legend=False leaves the legend to one legend_figure above a grid of these."""
    rows = history[(history["key"] == metric) & np.isfinite(history["value"])]
    if "x" not in rows:
        rows = rows.assign(x=rows["step"].astype(float))
    groups = [(run_id, g.sort_values(["x", "timestamp"])) for run_id, g in rows.groupby("run_id", sort=False)]
    webgl = sum(min(len(g), max_points) for _, g in groups) * (2 if smoothing > 0 else 1) > WEBGL_ABOVE
    order = {run_id: i for i, run_id in enumerate(colors)}
    full = {run_id: labels.get(run_id, run_id[:8]) for run_id, _ in groups}
    short = short_labels(full)
    traces = []
    for run_id, g in sorted(groups, key=lambda item: order.get(item[0], len(order))):
        x, y, step = g["x"].to_numpy(), g["value"].to_numpy(), g["step"].to_numpy()
        color, name = colors.get(run_id, "#888888"), full[run_id]
        where = "step %{x}" if x_title == "step" else f"{x_title} %{{x:.4~g}} · step %{{customdata}}"
        hover = f"<b>{name}</b><br>{where}<br>{metric} %{{y:.5~g}}<extra></extra>"
        smooth = _smoothed(metric, len(y), smoothing)
        series = [(y, 1.0, True)] if not smooth else [(y, 0.25, False), (ema(y, smoothing), 1.0, True)]
        for values, opacity, main in series:
            keep = downsample(values, max_points)
            traces.append(dict(
                type="scattergl" if webgl else "scatter", x=x[keep], y=values[keep], customdata=step[keep],
                mode="lines", name=short[run_id], legendgroup=run_id, showlegend=main and legend, opacity=opacity,
                hovertemplate=hover, line=dict(color=color, width=2 if main else 1)))
    # the legend is rows above the plot, never a column beside it: the curves keep the chart's full width
    box = dict(font=dict(size=11), itemclick="toggleothers", itemdoubleclick="toggle", orientation="h",
               yanchor="bottom", y=1.0, xanchor="left", x=0)
    legend_rows = _legend_rows(list(short.values()), LEGEND_CHARS_PER_ROW) if legend else 0
    layout = dict(title=dict(text=metric, yref="container", y=1.0, yanchor="top", pad=dict(t=10)),
                  xaxis=dict(title=dict(text=x_title)), yaxis=dict(title=dict(text=metric)), hovermode="closest",
                  height=400 + 20 * legend_rows, legend=box, showlegend=legend,
                  margin=dict(l=10, r=10, t=44 + 20 * legend_rows, b=10))
    # 50 runs make 100 traces: validating each costs ~5 ms, building from dicts unvalidated ~0.3 ms
    fig = go.Figure(data=traces, layout=layout, _validate=False)
    xs = rows["x"].to_numpy()
    if len(xs) and np.all(xs == np.round(xs)) and xs.max() - xs.min() <= 30:  # a few epochs: whole-number ticks
        fig.update_xaxes(dtick=1)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _row_share(matrix: np.ndarray) -> np.ndarray:
    rows = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)


def _square_axes(fig: go.Figure, n: int, title: str) -> go.Figure:
    side = min(900, max(380, 36 * n + 140))
    lines = title.count("<br>") + 1
    fig.update_layout(title=title, height=side + 20 * (lines - 1), margin=dict(l=10, r=10, t=30 + 22 * lines, b=10),
                      plot_bgcolor="rgba(0,0,0,0)")
    fig.update_xaxes(title="predicted", type="category", side="bottom", tickangle=-90 if n > 10 else 0, showgrid=False)
    fig.update_yaxes(title="true", type="category", autorange="reversed", scaleanchor="x", showgrid=False)
    return fig


def _cell_values(counts: np.ndarray, normalize: bool) -> np.ndarray:
    return _row_share(counts) * 100 if normalize else counts


def _in_display_order(counts: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Rows and columns in metrics.display_order ("two" before "ten", "class9" before "class10")."""
    order = display_order(labels)
    return counts[np.ix_(order, order)], [labels[i] for i in order]


def mistakes_max(matrix: Sequence[Sequence[int]], normalize: bool = False) -> float:
    """The largest off-diagonal value as drawn: pass the max of two runs' to draw them on one scale."""
    values = _cell_values(np.asarray(matrix, dtype=float), normalize)
    return float((values * (1 - np.eye(len(values)))).max()) if values.size else 0.0


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], labels: Sequence[str], normalize: bool = False,
                            title: str | None = None, mistakes_scale: float | None = None) -> go.Figure:
    """Rows = true, columns = predicted; the diagonal in greens, mistakes in reds on their own scale.

    Separate scales keep a 2% confusion visible next to a 98% diagonal. `normalize` shows each
    cell as a share of its true class (row), so small classes weigh as much as big ones.
    `mistakes_scale` fixes the top of the red scale (side-by-side views share one).
    """
    counts = np.asarray(matrix, dtype=float)
    n = len(labels)
    if counts.shape != (n, n):
        raise ValueError(f"a confusion matrix for {n} classes must be {n}x{n}, got {counts.shape}")
    counts, labels = _in_display_order(counts, labels)
    share = _row_share(counts)
    values = _cell_values(counts, normalize)
    diagonal = np.eye(n, dtype=bool)
    text = np.where(counts > 0, np.vectorize(lambda v: f"{v:.0f}%" if normalize else f"{v:.0f}")(values), "")
    hover = ("true %{y}<br>predicted %{x}<br>%{customdata[0]:.0f} images · %{customdata[1]:.1%} of the true class"
             "<extra></extra>")
    custom = np.dstack([counts, share])
    fig = go.Figure()
    for mask, scale in ((diagonal, CORRECT_SCALE), (~diagonal & (counts > 0), MISTAKE_SCALE)):
        z = np.where(mask, values, np.nan)  # cells of the other trace, and empty mistakes, stay blank
        top = np.nanmax(z) if np.isfinite(z).any() and np.nanmax(z) > 0 else 1.0
        if scale is MISTAKE_SCALE and mistakes_scale:
            top = mistakes_scale
        fig.add_trace(go.Heatmap(
            z=z, x=list(labels), y=list(labels), colorscale=scale, zmin=0, zmax=top, showscale=False,
            text=np.where(mask, text, "") if n <= TEXT_MAX_CLASSES else None,
            texttemplate="%{text}" if n <= TEXT_MAX_CLASSES else None, customdata=custom,
            hovertemplate=hover, xgap=1, ygap=1))
    correct, total = np.trace(counts), counts.sum()
    default = f"{correct:.0f}/{total:.0f} correct ({correct / total:.1%})" if total else "no test images"
    return _square_axes(fig, n, title or default)


def confusion_difference_figure(before: Sequence[Sequence[int]], after: Sequence[Sequence[int]],
                                labels: Sequence[str], normalize: bool = True,
                                names: tuple[str, str] = ("A", "B")) -> go.Figure:
    """after − before per cell, colored by whether the change helps: green = better, red = worse.

    More on the diagonal is better, more off it is worse, so off-diagonal colors are flipped;
    the cell text keeps the signed change.
    """
    a, b = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    n = len(labels)
    if a.shape != (n, n) or b.shape != (n, n):
        raise ValueError("the two runs' confusion matrices have different classes; "
                         "they cannot be compared cell by cell")
    (a, _), (b, labels) = _in_display_order(a, labels), _in_display_order(b, labels)
    delta = (_row_share(b) - _row_share(a)) * 100 if normalize else b - a
    gain = np.where(np.eye(n, dtype=bool), delta, -delta)
    limit = float(np.abs(gain).max()) or 1.0
    unit = " pp" if normalize else ""
    text = np.vectorize(lambda v: "" if abs(v) < 0.05 else f"{v:+.0f}" if not normalize else f"{v:+.1f}")(delta)
    fig = go.Figure(go.Heatmap(
        z=gain, x=list(labels), y=list(labels), colorscale=GOOD_BAD, zmin=-limit, zmax=limit, zmid=0,
        text=text if n <= TEXT_MAX_CLASSES else None, texttemplate="%{text}" if n <= TEXT_MAX_CLASSES else None,
        customdata=delta, xgap=1, ygap=1,
        hovertemplate=f"true %{{y}}<br>predicted %{{x}}<br>{names[1]} − {names[0]}: %{{customdata:+.2f}}{unit}"
                      "<extra></extra>",
        colorbar=dict(tickvals=[-limit, 0, limit], ticktext=["worse", "same", "better"])))
    what = "row-normalized, percentage points" if normalize else "counts"
    pair = f"{names[1]} − {names[0]}" if len(names[0]) + len(names[1]) <= 36 else f"{names[1]}<br>− {names[0]}"
    return _square_axes(fig, n, f"{pair}<br><sup>{what}</sup>")  # lines short enough for a narrow chart


def per_class_figure(per_class: pd.DataFrame, metric: str = "f1") -> go.Figure:
    """Horizontal bars of one per-class score, worst class on top; hover shows the others."""
    table = per_class.sort_values(metric, ascending=True)
    custom = table[["precision", "recall", "f1", "support"]].to_numpy()
    fig = go.Figure(go.Bar(
        x=table[metric], y=table["label"].astype(str), orientation="h", customdata=custom,
        marker=dict(color=table[metric], colorscale="RdYlGn", cmin=0, cmax=1),
        text=table[metric].map(lambda v: f"{v:.2f}"), textposition="auto",
        hovertemplate="<b>%{y}</b><br>precision %{customdata[0]:.3f}<br>recall %{customdata[1]:.3f}"
                      "<br>F1 %{customdata[2]:.3f}<br>support %{customdata[3]:.0f}<extra></extra>"))
    fig.update_layout(title=f"per-class {metric}", height=max(260, 22 * len(table) + 90),
                      margin=dict(l=10, r=10, t=40, b=10), xaxis=dict(range=[0, 1], title=metric))
    fig.update_yaxes(type="category", autorange="reversed")
    return fig


def _dimension(values: pd.Series, label: str) -> dict:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        if (numeric > 0).all() and numeric.max() / numeric.min() >= 10:  # e.g. learning rates
            logs = np.log10(numeric)
            ticks = np.arange(np.floor(logs.min()), np.ceil(logs.max()) + 1)
            return dict(label=f"{label} (log)", values=logs, tickvals=ticks, ticktext=[f"1e{t:.0f}" for t in ticks])
        return dict(label=label, values=numeric, **({"tickformat": ".2e"} if label == "lr" else {}))  # as tables.format_lr
    text = values.fillna("—").astype(str)
    categories = sorted(text.unique())
    codes = text.map({c: i for i, c in enumerate(categories)})
    return dict(label=label, values=codes, tickvals=list(range(len(categories))), ticktext=categories)


def parallel_coordinates_figure(runs: pd.DataFrame, params: Sequence[str], metric: str) -> go.Figure:
    """One line per run through its params, ending at `metric` and colored by it."""
    rows = runs[pd.to_numeric(runs[metric], errors="coerce").notna()]
    dims = [_dimension(rows[p], p.removeprefix("params.")) for p in params]
    score = pd.to_numeric(rows[metric])
    dims.append(dict(label=metric.removeprefix("metrics."), values=score))
    fig = go.Figure(go.Parcoords(
        dimensions=dims, line=dict(color=score, colorscale="Viridis", showscale=True,
                                   colorbar=dict(title=metric.removeprefix("metrics.")))))
    fig.update_layout(height=420, margin=dict(l=60, r=40, t=60, b=20))
    return fig


def top_classes_figure(top: pd.DataFrame) -> go.Figure:
    """Horizontal bars of a prediction's top-k classes (columns label, probability), most likely on top."""
    labels = top["label"].astype(str).tolist()
    fig = go.Figure(go.Bar(
        y=labels, x=top["probability"], orientation="h", marker_color=PALETTE[0],
        text=[f"{p:.1%}" for p in top["probability"]], textposition="auto",
        hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_layout(height=80 + 28 * len(labels), margin=dict(l=10, r=10, t=10, b=30), showlegend=False,
                      xaxis=dict(range=[0, 1], tickformat=".0%", title=None),
                      yaxis=dict(categoryorder="array", categoryarray=labels[::-1], type="category", title=None))
    return fig


# red where a pixel raised the class score, blue where it lowered it, see-through where it did neither
EXPLANATION_SCALE = [[0.0, "rgba(31, 119, 220, 0.75)"], [0.5, "rgba(255, 255, 255, 0)"],
                     [1.0, "rgba(214, 39, 40, 0.75)"]]
EVIDENCE_FOR_SCALE = [[0.0, "rgba(255, 255, 255, 0)"], [1.0, "rgba(214, 39, 40, 0.75)"]]  # maps >= 0 (Grad-CAM)


def explanation_figure(picture: np.ndarray, heat: np.ndarray, title: str = "", smooth: bool = False,
                       signed: bool = True, scale: bool = False) -> go.Figure:
    """A heat map in [-1, 1] (any size) stretched over a picture (uint8 (H, W), (H, W, 1) or (H, W, 3)).

    The model input is the picture (for ImageNet-style models its centre, images.input_region) resized
    without keeping its aspect, so stretching the map over it puts every cell over the pixels it was
    computed from. `signed`: the method can say what lowered the score (blue, symmetric around 0);
    maps >= 0 (Grad-CAM) get a 0-to-red scale that promises no blue. `scale` draws that scale.
    """
    picture = np.asarray(picture, dtype=np.uint8)
    picture = picture[..., None] if picture.ndim == 2 else picture
    picture = np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else picture
    (h, w), (mh, mw) = picture.shape[:2], heat.shape
    fig = go.Figure(go.Image(z=picture, hoverinfo="skip"))
    low = -1 if signed else 0
    ticks = dict(tickvals=[-1, 0, 1], ticktext=["lowered", "0", "raised"]) if signed else \
        dict(tickvals=[0, 1], ticktext=["0", "raised"])
    fig.add_trace(go.Heatmap(z=np.clip(heat, low, 1), x0=w / mw / 2 - 0.5, dx=w / mw, y0=h / mh / 2 - 0.5, dy=h / mh,
                             zmin=low, zmax=1, colorscale=EXPLANATION_SCALE if signed else EVIDENCE_FOR_SCALE,
                             showscale=scale, colorbar=dict(thickness=10, len=0.8, outlinewidth=0, **ticks),
                             zsmooth="best" if smooth else False,
                             hovertemplate="evidence %{z:+.2f}<extra></extra>"))
    fig.update_xaxes(visible=False, range=[-0.5, w - 0.5])
    fig.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor="x")
    fig.update_layout(height=230, margin=dict(l=0, r=0, t=26 if title else 0, b=0),
                      title=dict(text=title, font=dict(size=12), x=0.5, xanchor="center"))
    return fig


def lr_find_figure(test: Mapping) -> go.Figure:
    """A learning-rate range test (lrs, losses, smoothed, suggestion): loss against a log lr axis."""
    lrs, smoothed = list(test["lrs"]), list(test["smoothed"])
    fig = go.Figure([
        go.Scatter(x=lrs, y=list(test["losses"]), mode="lines", name="loss", line=dict(color="#bbbbbb", width=1)),
        go.Scatter(x=lrs, y=smoothed, mode="lines", name="smoothed loss", line=dict(color=PALETTE[0], width=2)),
    ])
    suggestion = test["suggestion"]
    fig.add_vline(x=suggestion, line_dash="dash", line_color="#d62728")
    # an annotation on a log axis is placed at 10**x (a shape is not): give it log10, so it sits by its line
    fig.add_annotation(x=np.log10(suggestion), xref="x", y=1, yref="y domain", xanchor="left", yanchor="top",
                       xshift=4, showarrow=False, text=f"suggested {suggestion:.2g}", font=dict(color="#d62728"))
    top = max(smoothed[: max(1, len(smoothed) // 2)]) * 1.5 if smoothed else None
    fig.update_layout(height=320, margin=dict(l=60, r=20, t=30, b=40), legend=dict(orientation="h", y=1.12),
                      xaxis=dict(type="log", title="learning rate", exponentformat="e"),
                      yaxis=dict(title="training loss", range=[0, top] if top else None))
    return fig


def reliability_figure(bins: Sequence[Mapping], title: str = "", after: Sequence[Mapping] | None = None) -> go.Figure:
    """The reliability diagram: each bin's accuracy against its mean confidence, the diagonal, the counts.

    Bars sit at the bins (accuracy, hover: count and gap); the dots mark each bin's mean confidence, so a
    bar below its dot is overconfidence. `after`: the same bins after temperature scaling, as a line.
    """
    full = [b for b in bins if b.get("count")]
    centres = [(b["lower"] + b["upper"]) / 2 for b in full]
    width = (bins[0]["upper"] - bins[0]["lower"]) if bins else 1 / 15
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line={"dash": "dash", "color": "#888"}, hoverinfo="skip"))
    fig.add_trace(go.Bar(x=centres, y=[b["accuracy"] for b in full], width=width * 0.95, name="accuracy",
                         marker_color="#1f77b4", text=[f"n={b['count']}" for b in full], textposition="outside",
                         customdata=[[b["count"], b["confidence"], b["accuracy"] - b["confidence"]] for b in full],
                         hovertemplate="confidence %{x:.2f} ± " + f"{width / 2:.3f}" + "<br>accuracy %{y:.1%}"
                                       "<br>mean confidence %{customdata[1]:.1%}<br>gap %{customdata[2]:+.1%}"
                                       "<br>%{customdata[0]} images<extra></extra>"))
    fig.add_trace(go.Scatter(x=centres, y=[b["confidence"] for b in full], mode="markers", name="mean confidence",
                             marker={"color": "#d62728", "symbol": "line-ew-open", "size": 14, "line": {"width": 3}}))
    if after:
        shown = [b for b in after if b.get("count")]
        fig.add_trace(go.Scatter(x=[b["confidence"] for b in shown], y=[b["accuracy"] for b in shown],
                                 mode="lines+markers", name="after temperature scaling", line={"color": "#2ca02c"}))
    # the legend sits at the figure's foot, below the axis title: in a half-width column, Plotly's default
    # place (just under the plot) put it over "confidence (top class)"
    fig.update_layout(title=title or "Reliability diagram", barmode="overlay", bargap=0,
                      legend={"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0},
                      xaxis={"title": "confidence (top class)", "range": [0, 1]},
                      yaxis={"title": "accuracy", "range": [0, 1.08], "tickformat": ".0%"},
                      margin={"t": 60, "b": 90})
    return fig


def class_curves_figure(curves: Mapping[str, Mapping], kind: str, title: str = "") -> go.Figure:
    """Per-class one-vs-rest curves: kind "roc" (TPR against FPR, AUC) or "pr" (precision against recall, AP)."""
    colors = run_colors(list(curves))
    fig = go.Figure()
    if kind == "roc":
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dash", "color": "#888"},
                                 hoverinfo="skip"))
    for name, c in curves.items():
        x, y = np.asarray(c[kind][0]), np.asarray(c[kind][1])
        keep = downsample(y)
        score = f"AUC {c['auc']:.3f}" if kind == "roc" else f"AP {c['ap']:.3f}"
        step = {"shape": "hv"} if kind == "pr" else {}
        fig.add_trace(go.Scatter(x=x[keep], y=y[keep], mode="lines",
                                 name=f"{name} ({score})", line={"color": colors[name], **step}))
    axes = (("false positive rate", "true positive rate") if kind == "roc" else ("recall", "precision"))
    fig.update_layout(title=title or ("ROC, one vs rest" if kind == "roc" else "Precision-recall, one vs rest"),
                      xaxis={"title": axes[0], "range": [0, 1.01]}, yaxis={"title": axes[1], "range": [0, 1.02]},
                      legend={"orientation": "v"}, margin={"t": 60, "b": 40})
    return fig


def embedding_figure(xy: np.ndarray, labels: np.ndarray, predicted: np.ndarray, classes: Sequence[str],
                     title: str = "") -> go.Figure:
    """The test images' 2-D map: one colour per true class, mistakes as crosses; customdata = row in the file."""
    xy, labels, predicted = np.asarray(xy), np.asarray(labels), np.asarray(predicted)
    colors = run_colors(list(classes))
    trace = go.Scattergl if len(labels) > WEBGL_ABOVE else go.Scatter
    fig = go.Figure()
    for c in display_order(list(classes)):
        rows = np.flatnonzero(labels == c)
        if not len(rows):
            continue
        wrong = predicted[rows] != c
        fig.add_trace(trace(
            x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=str(classes[c]), customdata=rows,
            marker={"color": colors[classes[c]], "size": np.where(wrong, 11, 6).tolist(),
                    "symbol": np.where(wrong, "x", "circle").tolist(), "line": {"width": 0}},
            text=[f"true {classes[c]} · predicted {classes[p]}" for p in predicted[rows]],
            hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=title or "Embedding map (crosses: mistakes)", dragmode="select",
                      xaxis={"title": "component 1", "showticklabels": False},
                      yaxis={"title": "component 2", "showticklabels": False}, legend={"title": {"text": "true class"}},
                      margin={"t": 60, "b": 40})
    return fig


def class_balance_figure(files_per_class: Mapping[str, int]) -> go.Figure:
    """Files per class as bars, the largest first: an audit's balance at a glance."""
    ordered = sorted(files_per_class.items(), key=lambda kv: (-kv[1], kv[0]))
    fig = go.Figure(go.Bar(x=[c for c, _ in ordered], y=[n for _, n in ordered], marker_color="#60a5fa",
                           hovertemplate="%{x}: %{y} files<extra></extra>"))
    fig.update_layout(title="Files per class", xaxis_title="class", yaxis_title="files", height=300,
                      margin=dict(l=40, r=10, t=40, b=40))
    fig.update_xaxes(type="category")
    return fig


# --- studies: Optuna's own figures, in this dashboard's style ------------------------------------
STUDY_FIGURES = ("optimization history", "parameter importances", "parallel coordinates", "slices",
                 "intermediate values")


def _study_style(fig: go.Figure, title: str, height: int = 380) -> go.Figure:
    fig.update_layout(title=dict(text=title, yref="container", y=1.0, yanchor="top", pad=dict(t=10)),
                      template="plotly_white", height=height, margin=dict(l=10, r=10, t=44, b=10),
                      legend=dict(font=dict(size=11), orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
                      colorway=PALETTE)
    return fig


def study_figures(study, objective: str) -> dict[str, go.Figure | None]:
    """Optuna's Plotly figures of `study` (an optuna Study) by name; None where the trials cannot draw one yet
    (importances need two completed trials with different values; intermediate values need an epoch)."""
    from optuna import visualization as vis

    done = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    complete = [t for t in done if t.state.name == "COMPLETE"]
    makers = {"optimization history": lambda: vis.plot_optimization_history(study, target_name=objective),
              "parameter importances": lambda: vis.plot_param_importances(study) if len(complete) >= 2 else None,
              "parallel coordinates": lambda: vis.plot_parallel_coordinate(study, target_name=objective),
              "slices": lambda: vis.plot_slice(study, target_name=objective),
              "intermediate values": lambda: vis.plot_intermediate_values(study) if done else None}
    figures = {}
    for name, make in makers.items():
        try:
            fig = make() if complete or name == "intermediate values" else None
        except (ValueError, RuntimeError, ZeroDivisionError):  # e.g. every trial took the same values
            fig = None
        figures[name] = _study_style(fig, name) if fig is not None else None
    if figures["intermediate values"] is not None:  # pruned curves end where the pruner cut them: mark the ends
        fig = figures["intermediate values"]
        fig.update_xaxes(title_text="epoch", dtick=1)
        fig.update_yaxes(title_text=objective)
        pruned = [t for t in done if t.state.name == "PRUNED" and t.intermediate_values]
        if pruned:
            fig.add_trace(go.Scatter(
                x=[max(t.intermediate_values) for t in pruned],
                y=[t.intermediate_values[max(t.intermediate_values)] for t in pruned], mode="markers",
                marker=dict(symbol="x", size=10, color="#c0392b"), name="pruned here",
                hovertemplate="trial %{customdata} pruned after epoch %{x}<extra></extra>",
                customdata=[t.number for t in pruned]))
    return figures


def sparsity_accuracy_figure(rows: Sequence[Mapping]) -> go.Figure:
    """Every variant of a version (rows of export.variants_of): test accuracy against sparsity, the share of
    the original's parameters removed or zeroed (0 for the original, ONNX and int8); flagged ones in red."""
    points = [(r["variant"], r.get(names.SPARSITY) or 0.0, r.get(names.TEST_ACCURACY), bool(r.get("flag")))
              for r in rows if r.get(names.TEST_ACCURACY) is not None]
    fig = go.Figure()
    for flagged, color, name in ((False, PALETTE[0], "variant"), (True, "#d62728", "accuracy dropped too far")):
        chosen = [p for p in points if p[3] == flagged]
        if chosen:
            fig.add_trace(go.Scatter(x=[p[1] for p in chosen], y=[p[2] for p in chosen], mode="markers+text",
                                     text=[p[0] for p in chosen], textposition="top center", name=name,
                                     marker=dict(color=color, size=10),
                                     hovertemplate="%{text}<br>sparsity %{x:.1%}<br>test accuracy %{y:.2%}"
                                                   "<extra></extra>"))
    fig.update_layout(title="Sparsity vs accuracy", height=340, margin=dict(l=60, r=20, t=40, b=40),
                      legend=dict(orientation="h", y=-0.2), showlegend=len(fig.data) > 1,
                      xaxis=dict(title="sparsity (share of parameters removed or zeroed)", tickformat=".0%",
                                 range=[-0.05, 1.0]),
                      yaxis=dict(title="test accuracy", tickformat=".0%"))
    return fig
