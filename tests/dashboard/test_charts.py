"""Chart builders and table shaping on plain data: no Streamlit, no MLflow.

Run: .venv/bin/python -m pytest tests/dashboard/test_charts.py -q
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline import names
from dashboard import charts, tables
from tests.dashboard.conftest import plotted


def history(runs: dict[str, np.ndarray], key: str = "train_loss_step") -> pd.DataFrame:
    frames = [pd.DataFrame({"run_id": r, "key": key, "step": np.arange(1, len(v) + 1),
                            "timestamp": 1_000_000 + np.arange(len(v)) * 500, "value": v}) for r, v in runs.items()]
    return pd.concat(frames, ignore_index=True)


def test_run_colors_are_distinct_stable_and_cover_fifty_runs():
    ids = [f"run{i}" for i in range(60)]
    colors = charts.run_colors(ids)
    assert len(set(colors.values())) == 60
    assert charts.run_colors(ids[:5]) == {r: colors[r] for r in ids[:5]}  # same position, same color


def test_ema_matches_tensorboard_debiased_smoothing():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    w = 0.6
    expected, last = [], 0.0
    for i, v in enumerate(values, 1):
        last = last * w + (1 - w) * v
        expected.append(last / (1 - w ** i))
    assert np.allclose(charts.ema(values, w), expected)
    assert charts.ema(values, 0.0) is not None and np.array_equal(charts.ema(values, 0.0), values)
    assert charts.ema(np.array([5.0, 5.0, 5.0]), 0.9)[0] == pytest.approx(5.0)  # no bias toward zero


def test_downsample_keeps_ends_and_extremes_within_budget():
    rng = np.random.default_rng(0)
    y = rng.normal(size=10_000)
    y[1234], y[8765] = 50.0, -50.0  # spikes a stride-based thinning would miss
    keep = charts.downsample(y, 500)
    assert len(keep) <= 502 and keep[0] == 0 and keep[-1] == len(y) - 1
    assert 1234 in keep and 8765 in keep
    assert np.all(np.diff(keep) > 0)
    assert np.array_equal(charts.downsample(y[:100], 500), np.arange(100))


def test_metric_figure_one_colored_trace_per_run_downsampled_with_hover():
    data = history({"a": np.linspace(2, 0.1, 10_000), "b": np.linspace(3, 0.2, 10_000)})
    colors, labels = charts.run_colors(["a", "b"]), {"a": "run A (lr=0.1)", "b": "run B (lr=0.01)"}
    fig = charts.metric_figure(data, "train_loss_step", colors, labels, max_points=1000)
    assert [t.name for t in fig.data] == ["run A (lr=0.1)", "run B (lr=0.01)"]
    assert [t.line.color for t in fig.data] == [colors["a"], colors["b"]]
    assert all(len(t.x) <= 1002 for t in fig.data)
    assert "step" in fig.data[0].hovertemplate and "run A" in fig.data[0].hovertemplate


def test_metric_figure_smoothing_draws_raw_faint_behind_and_log_y():
    data = history({"a": np.abs(np.random.default_rng(1).normal(1, 0.5, 300)) + 0.01})
    fig = charts.metric_figure(data, "train_loss_step", {"a": "#123456"}, {"a": "A"}, smoothing=0.9, log_y=True)
    raw, smooth = fig.data
    assert raw.opacity < smooth.opacity and not raw.showlegend and smooth.showlegend
    assert np.std(np.diff(smooth.y)) < np.std(np.diff(raw.y))
    assert fig.layout.yaxis.type == "log"


def test_metric_figure_skips_non_finite_values():
    data = history({"a": np.array([1.0, np.nan, 0.5, np.inf, 0.25])})
    fig = charts.metric_figure(data, "train_loss_step", {"a": "#000"}, {"a": "A"})
    assert list(fig.data[0].y) == [1.0, 0.5, 0.25]


def test_with_x_epoch_and_relative_time():
    data = pd.concat([history({"a": np.ones(20)}), history({"a": np.ones(2)}, key="val_loss")], ignore_index=True)
    by_epoch, title = charts.with_x(data, "epoch", {"a": 10.0})
    assert title == "epoch"
    steps = by_epoch[by_epoch["key"] == "train_loss_step"]["x"]
    assert steps.iloc[0] == pytest.approx(0.1) and steps.iloc[-1] == pytest.approx(2.0)
    assert list(by_epoch[by_epoch["key"] == "val_loss"]["x"]) == [1.0, 2.0]  # epoch metrics: step is the epoch
    timed, title = charts.with_x(data, "relative time", start_ms={"a": 1_000_000})
    assert title == "relative time (s)" and timed["x"].min() == 0 and timed["x"].max() == pytest.approx(9.5)
    with pytest.raises(ValueError, match="x axis"):
        charts.with_x(data, "wall")


def test_confusion_matrix_counts_and_normalized_with_class_names():
    matrix = [[8, 2, 0], [1, 9, 0], [0, 0, 0]]
    labels = ["cat", "dog", "eel"]
    fig = charts.confusion_matrix_figure(matrix, labels)
    diagonal, mistakes = fig.data
    assert list(diagonal.x) == labels and fig.layout.xaxis.type == "category"
    assert diagonal.z[0][0] == 8 and np.isnan(diagonal.z[0][1]) and mistakes.z[0][1] == 2
    assert diagonal.text[1][1] == "9" and mistakes.text[2][2] == ""  # empty cells stay blank
    assert "17/20 correct" in fig.layout.title.text
    normalized = charts.confusion_matrix_figure(matrix, labels, normalize=True)
    assert normalized.data[0].z[0][0] == pytest.approx(80.0) and normalized.data[0].text[0][0] == "80%"
    assert normalized.data[0].z[2][2] == 0  # an empty class divides by nothing, not by zero
    with pytest.raises(ValueError, match="3x3"):
        charts.confusion_matrix_figure([[1, 2]], labels)


def test_side_by_side_matrices_can_share_one_mistake_scale():
    a, b = [[9, 1], [0, 10]], [[5, 5], [2, 8]]
    shared = max(charts.mistakes_max(m, normalize=True) for m in (a, b))
    assert shared == pytest.approx(50.0)
    assert charts.confusion_matrix_figure(a, ["x", "y"], True, mistakes_scale=shared).data[1].zmax == shared
    assert charts.confusion_matrix_figure(a, ["x", "y"], True).data[1].zmax == pytest.approx(10.0)


def test_confusion_difference_colors_improvements_green():
    before, after = [[5, 5], [0, 10]], [[9, 1], [0, 10]]
    fig = charts.confusion_difference_figure(before, after, ["a", "b"], normalize=False, names=("old", "new"))
    gain, text = fig.data[0].z, fig.data[0].text
    assert gain[0][0] == 4 and gain[0][1] == 4  # more correct and fewer mistakes both count as better
    assert text[0][0] == "+4" and text[0][1] == "-4" and text[1][1] == ""
    assert "new − old" in fig.layout.title.text
    with pytest.raises(ValueError, match="different classes"):
        charts.confusion_difference_figure(before, [[1]], ["a", "b"])


def test_per_class_figure_sorted_by_f1_worst_on_top():
    per_class = tables.per_class_table({"a": {"precision": 1, "recall": 1, "f1": 1.0, "support": 5},
                                        "b": {"precision": .5, "recall": .5, "f1": 0.5, "support": 4},
                                        "c": {"precision": .8, "recall": .7, "f1": 0.75, "support": 3}})
    assert list(per_class["label"]) == ["b", "c", "a"]
    fig = charts.per_class_figure(per_class)
    assert list(fig.data[0].y) == ["b", "c", "a"] and fig.layout.yaxis.autorange == "reversed"


def test_parallel_coordinates_log_scales_lr_and_encodes_categories():
    runs = pd.DataFrame({"params.lr": ["0.1", "0.001", "0.0001"], "params.model": ["cnn", "mlp", "cnn"],
                         "metrics.test_accuracy": [0.9, 0.8, np.nan]})
    fig = charts.parallel_coordinates_figure(runs, ["params.lr", "params.model"], "metrics.test_accuracy")
    lr, model, score = fig.data[0].dimensions
    assert lr.label == "lr (log)" and list(lr.values) == pytest.approx([-1, -3])  # the run without a score left out
    assert list(model.ticktext) == ["cnn", "mlp"] and score.label == "test_accuracy"


def test_run_labels_name_distinguishing_params_and_stay_unique():
    runs = pd.DataFrame({"run_id": ["r1", "r2", "r3"], "run_name": ["cnn", "cnn", "mlp"],
                         "params.lr": ["0.1", "0.1", "0.01"], "params.seed": ["0", "0", "0"]})
    labels = tables.run_labels(runs)
    assert labels["r3"] == "mlp (lr=1.00e-2)" and "seed" not in labels["r3"]
    assert labels["r1"] != labels["r2"] and labels["r1"].endswith("[r1]")


def test_diff_table_keeps_only_differing_params_and_final_metrics():
    runs = pd.DataFrame({"run_id": ["r1", "r2"], "run_name": ["a", "b"], "status": ["FINISHED", "FAILED"],
                         "params.lr": ["0.1", "0.01"], "params.seed": ["0", "0"],
                         "metrics.test_accuracy": [0.9, np.nan]})
    table = tables.diff_table(runs, pd.Series({"r1": 0.95}))
    assert list(table.columns) == ["run", "status", "lr", "best val_accuracy", "test_accuracy"]
    assert table.loc["r1", "best val_accuracy"] == 0.95 and np.isnan(table.loc["r2", "best val_accuracy"])


def test_history_csv_has_every_point_and_run_names():
    data = history({"a": np.arange(5000.0)})
    lines = tables.history_csv(data, {"a": "run A"}).decode().splitlines()
    assert lines[0] == "run_id,run,key,step,timestamp,value" and len(lines) == 5001
    assert lines[1].startswith("a,run A,train_loss_step,1,")


def test_format_duration():
    shown = [tables.format_duration(s) for s in (5, 75, 3725, float("nan"), None)]
    assert shown == ["5s", "1m 15s", "1h 02m", "—", "—"]


def test_a_resumed_run_trains_until_now_not_until_its_last_attempts_end():
    from types import SimpleNamespace

    tags = {names.TAG_TRAIN_STARTED: "1000.0", names.TAG_QUEUED: "990.0"}
    resumed = SimpleNamespace(start_time=990_000, end_time=1_100_000, status=names.RUNNING)  # attempt 1 ended at 1100
    assert tables.timing(resumed, tags, now_s=1_500.0).training_s == 500.0
    ended = SimpleNamespace(start_time=990_000, end_time=1_100_000, status=names.FAILED)
    assert tables.timing(ended, tags, now_s=1_500.0).training_s == 100.0
    finished = {**tags, names.TAG_TRAIN_ENDED: "1090.0"}
    assert tables.timing(SimpleNamespace(start_time=990_000, end_time=1_100_000, status=names.FINISHED), finished,
                         now_s=1_500.0).training_s == 90.0


def test_only_runs_with_a_model_are_offered_as_trained():
    runs = pd.DataFrame({"run_id": ["run", "sweep", "lr"], f"tags.{names.TAG_SWEEP}": [None, "grid", None],
                         f"tags.{names.TAG_KIND}": [None, None, names.KIND_LR_FIND]})
    assert tables.trained(runs)["run_id"].tolist() == ["run"]  # Register, Compare, the confusion "versus"
    assert tables.trained(pd.DataFrame({"run_id": ["a"]}))["run_id"].tolist() == ["a"]


def test_mlflow_links():
    assert tables.mlflow_run_url("http://h:5000", "3", "abc") == "http://h:5000/#/experiments/3/runs/abc"
    url = tables.mlflow_compare_url("http://h:5000", ["a", "b"], ["1"])
    assert url == "http://h:5000/#/compare-runs?runs=%5B%22a%22%2C%22b%22%5D&experiments=%5B%221%22%5D"


def test_steps_per_epoch_is_read_from_what_the_trainer_logged():
    runs = pd.DataFrame({"run_id": ["a", "b"], f"tags.{names.TAG_STEPS_PER_EPOCH}": ["21", None]})
    assert tables.steps_per_epoch(runs) == {"a": 21.0}
    assert tables.steps_per_epoch(pd.DataFrame({"run_id": ["a"]})) == {}  # a run that logged neither


def test_short_per_epoch_series_are_not_smoothed_but_per_step_ones_are():
    epochs = history({"a": np.array([2.0, 1.2, 0.9, 0.6, 0.4])}).assign(key="train_loss")
    fig = charts.metric_figure(epochs, "train_loss", {"a": "#123456"}, {"a": "A"}, smoothing=0.8)
    assert len(fig.data) == 1 and plotted(fig.data[0].y)[-1] == pytest.approx(0.4)  # the real last value
    steps = history({"a": np.linspace(2, 0.4, 5)})
    assert len(charts.metric_figure(steps, "train_loss_step", {"a": "#1"}, {"a": "A"}, smoothing=0.8).data) == 2


def test_the_legend_sits_above_the_plot_even_for_many_runs():
    runs = {f"r{i}": np.linspace(1, 0, 10) for i in range(12)}
    fig = charts.metric_figure(history(runs), "train_loss_step", charts.run_colors(list(runs)),
                               {r: f"sweep-{r} lr=0.001 batch_size=32" for r in runs})
    assert fig.layout.legend.orientation == "h" and fig.layout.margin.t > 44 + 20


def test_one_learning_rate_format():
    assert tables.format_lr(0.03) == tables.format_lr("0.03") == tables.compact("0.03", "lr") == "3.00e-2"
    assert tables.format_lr(3e-4) == "3.00e-4"


def test_explanation_figure_stretches_the_map_over_the_picture():
    picture = np.zeros((80, 40), dtype=np.uint8)  # a gray original, taller than wide
    heat = np.array([[1.0, -1.0], [0.0, 2.0]])
    fig = charts.explanation_figure(picture, heat, "digits-cnn v1", smooth=True)
    image, overlay = fig.data
    assert image.type == "image" and np.asarray(image.z).shape == (80, 40, 3)
    assert overlay.type == "heatmap" and (overlay.dx, overlay.dy) == (20, 40)  # each cell covers its pixels
    assert np.asarray(overlay.z).max() == 1.0 and (overlay.zmin, overlay.zmax) == (-1, 1)
    assert "0)" in overlay.colorscale[1][1]  # no evidence: see-through
    assert fig.layout.title.text == "digits-cnn v1" and fig.layout.yaxis.scaleanchor == "x"


def test_the_lr_suggestion_label_sits_next_to_its_line_on_the_log_axis():
    lrs = list(np.logspace(-5, 0, 50))
    fig = charts.lr_find_figure({"lrs": lrs, "losses": list(np.linspace(2, 1, 50)),
                                 "smoothed": list(np.linspace(2, 1, 50)), "suggestion": 0.0093})
    [line], [label] = fig.layout.shapes, fig.layout.annotations
    assert fig.layout.xaxis.type == "log" and line.x0 == 0.0093
    assert label.text == "suggested 0.0093" and 10 ** label.x == pytest.approx(line.x0)  # Plotly reads log10 here


def test_a_confusion_matrix_of_number_words_reads_zero_to_nine():
    words = ["eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero"]  # sorted folder names
    matrix = np.diag(np.arange(1, 11))  # "eight" has 1 image, ..., "zero" 10
    matrix[0, 4] = 3                    # 3 "eight" images predicted "one"
    for fig in (charts.confusion_matrix_figure(matrix, words),
                charts.confusion_difference_figure(matrix, matrix, words, normalize=False)):
        shown = list(fig.data[0].y)
        assert shown == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        assert list(fig.data[0].x) == shown
    diagonal, mistakes = charts.confusion_matrix_figure(matrix, words).data
    assert diagonal.z[0][0] == 10 and diagonal.z[8][8] == 1 and mistakes.z[8][1] == 3  # cells moved with labels


SWEEP_LABELS = {f"r{i}": f"sweep-0{i} lr=0.0{i} batch_size=64 weight_decay=0.0005" for i in (1, 2, 3)}


def test_long_legend_names_are_cut_at_a_word_and_stay_apart():
    short = charts.short_labels(SWEEP_LABELS)
    assert short["r3"] == "sweep-03 lr=0.03 batch_size=64…" and len(set(short.values())) == 3
    assert charts.short_labels({"a": "tiny-mlp (lr=3.00e-3)"}) == {"a": "tiny-mlp (lr=3.00e-3)"}  # short: whole
    assert charts.short_labels({"a": "adaptable-koi-736 (model=cnn, epochs=2)"}) == {"a": "adaptable-koi-736 (model=cnn, …)"}
    alike = {"a": "sweep lr=0.01 batch_size=64 weight_decay=0.0005", "b": "sweep lr=0.01 batch_size=64 weight_decay=0.005"}
    assert charts.short_labels(alike) == alike  # cut alike, they would read as one run


def test_a_grid_of_curves_has_one_legend_above_it_and_full_names_on_hover():
    runs = {r: np.linspace(1, 0, 10) for r in SWEEP_LABELS}
    colors = charts.run_colors(list(runs))
    fig = charts.metric_figure(history(runs), "train_loss_step", colors, SWEEP_LABELS, legend=False)
    assert fig.layout.showlegend is False and not any(t.showlegend for t in fig.data)
    assert fig.layout.margin.t == 44  # no room kept for legend rows
    assert SWEEP_LABELS["r3"] in fig.data[2].hovertemplate  # the whole name where the curve is pointed at
    legend = charts.legend_figure(colors, SWEEP_LABELS)
    assert [t.name for t in legend.data] == list(charts.short_labels(SWEEP_LABELS).values())
    assert [t.line.color for t in legend.data] == list(colors.values())
    assert legend.layout.legend.orientation == "h" and legend.layout.height < 100  # a strip, not a chart


def test_the_smoothing_note_names_the_curves_the_slider_leaves_alone():
    data = pd.concat([history({"a": np.ones(200), "b": np.ones(200)}),
                      history({"a": np.ones(5), "b": np.ones(5)}, key="val_loss"),
                      history({"a": np.ones(40)}, key="lr")], ignore_index=True)
    metrics = ["train_loss_step", "val_loss", "lr"]
    assert charts.left_raw(data, metrics, 0.0) == []  # no smoothing asked: nothing to explain
    assert charts.left_raw(data, metrics, 0.6) == ["val_loss"]  # 40 epochs of lr are smoothed
    assert "val_loss" in charts.smoothing_note(["val_loss"]) and "per-step" in charts.smoothing_note(["val_loss"])


def test_a_map_that_cannot_be_negative_gets_a_scale_without_blue():
    heat = np.array([[0.0, 0.5], [1.0, 0.25]])
    cam = charts.explanation_figure(np.zeros((8, 8), np.uint8), heat, signed=False, scale=True).data[1]
    assert (cam.zmin, cam.zmax) == (0, 1) and cam.showscale and list(cam.colorbar.ticktext) == ["0", "raised"]
    assert all("214, 39, 40" in color or ", 0)" in color for _, color in cam.colorscale)  # see-through to red
    ig = charts.explanation_figure(np.zeros((8, 8), np.uint8), -heat, scale=True).data[1]
    assert (ig.zmin, ig.zmax) == (-1, 1) and list(ig.colorbar.ticktext) == ["lowered", "0", "raised"]
    assert not charts.explanation_figure(np.zeros((8, 8), np.uint8), heat).data[1].showscale
