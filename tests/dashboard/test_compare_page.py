"""The compare page through AppTest: URL selection, curves and their controls, diff table, edge runs.

Run: .venv/bin/python -m pytest tests/dashboard/test_compare_page.py -q
"""
from __future__ import annotations

import pytest

from tests.dashboard.conftest import figures, open_page, plotted, texts

pytestmark = pytest.mark.usefixtures("edge_runs")


def curves(at) -> dict[str, dict]:
    return {fig["layout"]["title"]["text"]: fig for fig in figures(at)
            if fig["data"][0]["type"].startswith("scatter") and "title" in fig["layout"]}


def legends(at) -> list[dict]:
    """The figures that draw a legend: Plotly draws one unless showlegend is false (or a single trace)."""
    return [fig for fig in figures(at) if fig["layout"].get("showlegend", len(fig["data"]) > 1)
            and any(t.get("showlegend", True) for t in fig["data"]) and fig["data"][0]["type"].startswith("scatter")]


def test_url_selection_draws_one_color_per_run_across_charts(trained_runs):
    at = open_page("compare", runs=",".join(trained_runs))
    assert not at.exception and not at.error and not at.warning
    assert at.multiselect(key="runs").value == trained_runs
    charts = curves(at)
    assert set(charts) == {"train_loss", "val_loss", "val_accuracy", "train_loss_step"}
    colors = [{t["name"]: t["line"]["color"] for t in fig["data"]} for fig in charts.values()]
    assert all(c == colors[0] for c in colors) and len(set(colors[0].values())) == 3
    names = set(colors[0])
    assert {"tiny-mlp (lr=3.00e-3)", "tiny-cnn-lr1e-2 (lr=1.00e-2)"} <= names  # not what their names say
    assert "step" in charts["val_loss"]["data"][0]["hovertemplate"]
    assert at.download_button(key="csv").label.startswith("Download CSV")


def test_one_legend_above_the_grid_instead_of_one_per_chart(trained_runs):
    at = open_page("compare", runs=",".join(trained_runs))
    [legend] = legends(at)
    assert "title" not in legend["layout"] and len(legend["data"]) == 3  # the strip above the 4 charts
    assert {t["line"]["color"] for t in legend["data"]} == {t["line"]["color"] for t in curves(at)["val_loss"]["data"]}


def test_diff_table_and_parallel_coordinates(trained_runs):
    at = open_page("compare", runs=",".join(trained_runs))
    table = at.dataframe[0].value
    assert {"run", "lr", "model", "best val_accuracy", "test_accuracy"} <= set(table.columns)
    assert "seed" not in table.columns and "dataset" not in table.columns  # same for all: left out
    parcoords = [f for f in figures(at) if f["data"][0]["type"] == "parcoords"]
    assert parcoords and [d["label"] for d in parcoords[0]["data"][0]["dimensions"]][-1] == "test_accuracy"


def test_x_axis_smoothing_and_log_scale(trained_runs):
    at = open_page("compare", runs=",".join(trained_runs[:2]))
    at.radio(key="x_axis").set_value("epoch").run()
    steps = curves(at)["train_loss_step"]["data"][0]
    assert curves(at)["train_loss_step"]["layout"]["xaxis"]["title"]["text"] == "epoch"
    assert max(plotted(steps["x"])) == pytest.approx(2.0)  # 2 epochs of fractional-epoch steps
    at.radio(key="x_axis").set_value("relative time").run()
    assert "relative time" in curves(at)["val_loss"]["layout"]["xaxis"]["title"]["text"]
    at.slider(key="smoothing").set_value(0.8).run()
    at.toggle(key="log_y").set_value(True).run()
    loss = curves(at)["train_loss_step"]
    assert len(loss["data"]) == 4 and loss["data"][0]["opacity"] < 1  # raw faint + smoothed, per run
    assert loss["layout"]["yaxis"]["type"] == "log"
    assert not at.exception


def test_smoothing_says_which_curves_it_leaves_as_logged(trained_runs):
    at = open_page("compare", runs=",".join(trained_runs[:2]))
    assert "Smoothing leaves" not in texts(at.caption)  # no smoothing asked
    at.slider(key="smoothing").set_value(0.8).run()
    [note] = [c.value for c in at.caption if "Smoothing leaves" in c.value]
    assert "val_loss" in note and "train_loss_step" not in note  # 2 epochs stay raw, the per-step loss is smoothed


def test_editing_the_selection_rewrites_the_url(trained_runs):
    at = open_page("compare", runs=",".join(trained_runs))
    at.multiselect(key="runs").unselect(trained_runs[0]).run()
    assert at.query_params["runs"] == ",".join(trained_runs[1:])
    at.multiselect(key="metrics").set_value(["val_accuracy"]).run()
    assert list(curves(at)) == ["val_accuracy"]


def test_deleted_and_unknown_runs_in_the_link_are_reported(trained_runs, edge_runs):
    at = open_page("compare", runs=",".join([*trained_runs[:2], edge_runs["deleted"], "f" * 32]))
    assert not at.exception
    assert "Left out 2 run(s)" in texts(at.warning)
    assert at.multiselect(key="runs").value == trained_runs[:2] and curves(at)


def test_running_and_unevaluated_runs_compare_without_errors(edge_runs):
    at = open_page("compare", runs=f"{edge_runs['running']},{edge_runs['unevaluated']},{edge_runs['failed']}")
    assert not at.exception and not at.error
    assert set(curves(at)) == {"train_loss", "train_loss_step"}


def test_fewer_than_two_runs_asks_for_more(trained_runs):
    at = open_page("compare", runs=trained_runs[0])
    assert not at.exception and "Pick at least two runs" in texts(at.info)


def test_empty_store(empty_store):
    at = open_page("compare", runs="a,b")
    assert not at.exception and "No runs yet" in texts(at.info)


def test_unreachable_store(unreachable_store):
    at = open_page("compare", runs="a,b")
    assert not at.exception and "cannot be read" in texts(at.error)


def test_the_view_comes_back_from_the_url(trained_runs):
    # the browser writes bound widgets' values into the URL (tests/e2e checks it); the page reads them back
    shared = {"runs": ",".join(trained_runs[:2]), "x_axis": "epoch", "smoothing": "0.5", "log_y": "true",
              "metrics": ["val_loss", "train_loss_step"]}
    again = open_page("compare", **shared)
    assert not again.exception
    assert again.radio(key="x_axis").value == "epoch" and again.slider(key="smoothing").value == 0.5
    assert again.toggle(key="log_y").value is True
    assert again.multiselect(key="metrics").value == ["val_loss", "train_loss_step"]
    assert list(curves(again)) == ["val_loss", "train_loss_step"]


def test_a_sweep_in_the_link_stands_for_its_runs_and_bad_ids_are_shown_whole(sweep_runs):
    bogus = "0123456789abcdef" * 2
    at = open_page("compare", runs=f"{sweep_runs['parent']},{bogus}")
    assert not at.exception and bogus in texts(at.warning)
    assert at.multiselect(key="runs").value == [sweep_runs[f"run{i}"] for i in (1, 2, 3)]
    assert all(sweep_runs["parent"][:8] not in o for o in at.multiselect(key="runs").options)


def test_relative_time_counts_from_the_training_start_not_the_queueing(sweep_runs):
    at = open_page("compare", runs=f"{sweep_runs['run1']},{sweep_runs['run2']}", x_axis="relative time",
                   metrics="val_loss")
    traces = {t["name"]: plotted(t["x"]) for t in curves(at)["val_loss"]["data"]}
    first = next(x for name, x in traces.items() if name.startswith("lr-sweep-01"))
    second = next(x for name, x in traces.items() if name.startswith("lr-sweep-02"))
    assert first == pytest.approx([4, 8], abs=0.01)    # 20 s queued and 2 s of loading left out
    assert second == pytest.approx([26, 30], abs=0.01)  # an old run without the tags: from MLflow's start


def test_a_link_to_runs_beyond_the_newest_listed_reads_them_by_id(trained_runs, monkeypatch):
    """With more runs than the listing holds (5,000 newest), a link to older ones still compares them."""
    from dashboard.store import listings

    monkeypatch.setattr(listings, "MAX_RUNS", 1)  # the listing holds only the newest run of the store
    deleted = "0" * 32
    at = open_page("compare", runs=",".join([*trained_runs[:2], deleted, "not-a-run-id"]))
    assert not at.exception
    assert at.multiselect(key="runs").value == trained_runs[:2]  # both, though neither is the newest
    [warning] = [w.value for w in at.warning]
    assert warning.startswith("Left out 2 run(s)") and deleted in warning and "not-a-run-id" in warning
    assert len(curves(at)["val_loss"]["data"]) == 2


def test_long_histories_are_drawn_sampled_and_the_csv_has_every_point(long_runs):
    from dashboard import store
    from dashboard.views import compare
    from tests.dashboard.conftest import LONG_STEPS, SHORT_STEPS

    runs = [long_runs["long"], long_runs["short"]]
    at = open_page("compare", runs=",".join(runs), metrics="train_loss_step")
    assert not at.exception and not at.error
    ys = sorted((plotted(t["y"]) for t in curves(at)["train_loss_step"]["data"]), key=len)
    assert len(ys[0]) == SHORT_STEPS and len(ys[1]) <= store.SAMPLED_POINTS  # the short one whole
    assert max(ys[1]) == 50.0 and min(ys[1]) == -50.0  # the spike and the dip are drawn
    drawn = len(ys[0]) + len(ys[1])
    assert f"Drawing {drawn:,} of {LONG_STEPS + SHORT_STEPS:,} logged points" in texts(at.caption)
    assert at.download_button(key="csv").label == f"Download CSV ({LONG_STEPS + SHORT_STEPS:,} points)"
    versions = {r: store.run(r)["last_update"] for r in runs}
    csv = compare.comparison_csv(versions, ["train_loss_step"], {r: r[:8] for r in runs})  # what the click reads
    assert len(csv.decode().splitlines()) == 1 + LONG_STEPS + SHORT_STEPS


def test_full_detail_draws_every_point(long_runs):
    at = open_page("compare", runs=f"{long_runs['long']},{long_runs['short']}", metrics="train_loss_step",
                   detail="true")
    assert not at.exception and at.toggle(key="detail").value is True
    longest = max((plotted(t["y"]) for t in curves(at)["train_loss_step"]["data"]), key=len)
    assert len(longest) > 1000 and max(longest) == 50.0  # the chart's own thinning, from every point
    assert "Drawing" not in texts(at.caption)


def test_zooming_to_a_stretch_of_steps_draws_every_point_logged_there(long_runs):
    from tests.dashboard.conftest import SPIKE

    at = open_page("compare", runs=f"{long_runs['long']},{long_runs['short']}", metrics="train_loss_step")
    assert at.slider(key="steps").value == (1, 10_000)
    at.slider(key="steps").set_value((SPIKE - 50, SPIKE + 50)).run()
    assert not at.exception
    spiked = [plotted(t["y"]) for t in curves(at)["train_loss_step"]["data"] if 50.0 in plotted(t["y"])]
    assert len(spiked) == 1 and len(spiked[0]) == 101  # every step of the stretch, where the unzoomed sample kept ~3 of them
    assert "Drawing" not in texts(at.caption)  # nothing left out in this range
    at = open_page("compare", runs=f"{long_runs['long']},{long_runs['short']}", metrics="train_loss_step",
                   steps=[str(SPIKE - 50), str(SPIKE + 50)])  # the link keeps the zoom
    assert at.slider(key="steps").value == (SPIKE - 50, SPIKE + 50)
