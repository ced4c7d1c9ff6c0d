"""The runs page through AppTest against the session's temp store (3 trained runs + edge runs).

Run: .venv/bin/python -m pytest tests/dashboard/test_runs_page.py -q
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from dashboard.tables import FOLD_ICONS
from pipeline import settings
from tests.dashboard.conftest import open_page, texts

pytestmark = pytest.mark.usefixtures("edge_runs")


@pytest.fixture(scope="module")
def range_test(store) -> dict:
    """A real learning-rate range test (pipeline lr-find, 40 steps) beside one finished run, in its own experiment."""
    from pipeline.config import RunConfig
    from pipeline.runs import lifecycle, lr_find, tracking

    config = RunConfig(dataset="digits", model="cnn", epochs=5, experiment="dashboard-lr-find")
    run_id, result = lr_find.run(config, steps=40)
    client = tracking.connect()
    lifecycle.record(client, tracking.experiment_id(client, "dashboard-lr-find"), "a trained run", {})  # a run beside it
    return {"run_id": run_id, "name": client.get_run(run_id).info.run_name, "suggestion": result.suggestion}


def frame_of(at, column: str):
    """The st.dataframe that has this column."""
    return next(frame for frame in at.dataframe if column in frame.value.columns)


def statuses(table) -> set[str]:
    return {cell[0] for cell in table["status"]}  # each a one-item list: a colored pill


def test_table_lists_an_experiments_runs_with_scores_and_links(trained_runs):
    at = open_page(experiment="tests")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert set(table["name"]) == {"tiny-cnn", "tiny-cnn-lr1e-2", "tiny-mlp"}
    assert set(table["run_id"]) == set(trained_runs)
    assert statuses(table) == {"✓ FINISHED"}
    assert table["best val acc"].between(0.5, 1).all() and table["test acc"].between(0.5, 1).all()
    assert table["test F1"].notna().all() and table["training"].str.fullmatch(r"(\d+m )?\d+s").all()
    assert set(table["dataset"]) == {"digits"} and set(table["model"]) == {"cnn", "mlp"}
    assert table["mlflow"].str.startswith(settings.mlflow_ui_url() + "/#/experiments/").all()
    assert table["open"].str.startswith("run_detail?run=").all()
    assert at.query_params["experiment"] == "tests"
    assert at.selectbox(key="experiment").value == "tests"


def test_statuses_are_distinct_and_deleted_runs_hidden(edge_runs):
    at = open_page(experiment="dashboard-edge")
    table = at.dataframe[0].value
    assert set(table["name"]) == {"still-running", "broken", "no-evaluation"}
    assert statuses(table) == {"▶ RUNNING", "✗ FAILED", "✓ FINISHED"}
    assert edge_runs["deleted"] not in set(table["run_id"])


def test_experiment_selector_switches_table_and_url(trained_runs):
    at = open_page(experiment="tests")
    at.selectbox(key="experiment").set_value("dashboard-edge").run()
    assert at.query_params["experiment"] == "dashboard-edge"
    assert "broken" in set(at.dataframe[0].value["name"])


def test_status_model_and_mlflow_filters(trained_runs):
    at = open_page(experiment="dashboard-edge")
    at.multiselect(key="filter_status").set_value(["FAILED"]).run()
    assert list(at.dataframe[0].value["name"]) == ["broken"]

    at = open_page(experiment="tests")
    at.multiselect(key="filter_model").set_value(["cnn"]).run()
    assert set(at.dataframe[0].value["name"]) == {"tiny-cnn", "tiny-cnn-lr1e-2"}
    at.multiselect(key="filter_model").set_value([]).run()
    at.text_input(key="filter").input("params.lr = '0.01' and metrics.test_accuracy > 0.5").run()
    assert list(at.dataframe[0].value["name"]) == ["tiny-cnn-lr1e-2"]


def test_invalid_filter_string_is_a_clear_error(trained_runs):
    at = open_page(experiment="tests")
    at.text_input(key="filter").input("params.lr >> 3").run()
    assert not at.exception
    assert "invalid filter" in texts(at.error) and "Example:" in texts(at.error)
    assert not at.dataframe


def test_selected_rows_open_the_compare_page(trained_runs):
    at = open_page(experiment="tests")
    assert at.button(key="compare").disabled
    at.session_state["runs_table"] = {"selection": {"rows": [0, 2], "columns": []}}
    at.run()
    chosen = [at.dataframe[0].value["run_id"].iloc[i] for i in (0, 2)]
    at.button(key="compare").click().run()
    assert not at.exception and at.title[0].value == "Compare runs"
    assert at.query_params["runs"] == ",".join(chosen)


def test_one_selected_row_opens_its_detail_and_mlflow(trained_runs):
    at = open_page(experiment="tests")
    at.session_state["runs_table"] = {"selection": {"rows": [1], "columns": []}}
    at.run()
    row = at.dataframe[0].value.iloc[1]
    assert at.button(key="compare").disabled and not at.button(key="open").disabled
    assert at.get("link_button")[0].proto.url == row["mlflow"]
    at.button(key="open").click().run()
    assert not at.exception and at.title[0].value == row["name"]
    assert at.query_params["run"] == row["run_id"]


def test_empty_store_invites_a_first_run(empty_store):
    at = open_page()
    assert not at.exception and not at.error
    assert "No runs yet: launch one." in texts(at.info)
    assert "python -m pipeline train" in texts(at.code)


def test_unreachable_store_fails_fast_with_a_clear_message(unreachable_store):
    at = open_page()
    assert not at.exception
    assert "cannot be read" in texts(at.error) and "127.0.0.1:1" in texts(at.error)


def test_a_sweep_is_one_group_row_and_durations_leave_out_the_queue(sweep_runs):
    at = open_page(experiment="dashboard-sweep")
    assert not at.exception and not at.error
    at.session_state["runs_table_unfolded"] = [sweep_runs["parent"]]
    at.run()
    table = at.dataframe[0].value.set_index("run_id")
    parent = table.loc[sweep_runs["parent"]]
    assert parent["status"] == ["◇ SWEEP"] and parent["sweep"] == f"{FOLD_ICONS[True]} 3 runs"
    assert parent["test acc"] == pytest.approx(0.95) and pd.isna(parent["training"])  # a group, not a training
    first = table.loc[sweep_runs["run1"]]
    assert first["training"] == "12s" and first["queued"] == "20s"  # as the run's page writes them
    assert list(at.dataframe[0].value.columns[:7]) == ["run_id", "sweep", "open", "name", "status", "test acc",
                                                       "best val acc"]


def test_a_sweep_folds_its_runs_under_its_row(sweep_runs):
    at = open_page(experiment="dashboard-sweep")
    folded = at.dataframe[0].value
    assert list(folded["run_id"]) == [sweep_runs["parent"]] and list(folded["sweep"]) == [f"{FOLD_ICONS[False]} 3 runs"]
    at.session_state["runs_table_unfolded"] = [sweep_runs["parent"]]  # what its fold button's click sets
    at.run()
    unfolded = at.dataframe[0].value
    assert list(unfolded["run_id"]) == [sweep_runs[k] for k in ("parent", "run1", "run2", "run3")]  # queue order
    assert list(unfolded["name"][1:]) == ["└ lr-sweep-01 lr=0.01", "└ lr-sweep-02 lr=0.001", "└ lr-sweep-03 lr=0.1"]
    assert unfolded["sweep"][1:].isna().all()  # no button on its runs
    # a run whose parent is filtered out stands alone
    at.multiselect(key="filter_model").set_value(["cnn"]).run()
    assert set(at.dataframe[0].value["run_id"]) == {sweep_runs["run1"], sweep_runs["run2"], sweep_runs["run3"]}


def test_the_table_shows_what_fits_1400_px_and_hides_the_rest(sweep_runs):
    at = open_page(experiment="dashboard-sweep")
    config = json.loads(at.dataframe[0].proto.columns)
    config = {name: c for name, c in config.items() if not name.startswith("_")}  # not the (hidden) index
    hidden = {name for name, c in config.items() if c.get("hidden")}
    assert hidden == {"queued", "dataset", "epochs", "batch_size", "optimizer", "weight_decay", "schedule", "augment",
                      "mlflow"}
    widths = {name: c.get("width") for name, c in config.items() if not c.get("hidden")}
    assert all(isinstance(w, int) for w in widths.values()), widths  # none sized to its longest cell
    assert sum(widths.values()) <= 905  # measured at 1,400 px: a 940 px table, 35 px of it the row checkboxes
    assert at.dataframe[0].proto.placeholder == "—"  # an empty cell never reads "None"


def test_a_range_test_is_listed_as_one_with_its_suggestion(range_test):
    at = open_page(experiment="dashboard-lr-find")
    assert not at.exception and not at.error
    assert range_test["run_id"] not in set(frame_of(at, "best val acc").value["run_id"])  # not a training run
    tests = frame_of(at, "suggested lr").value
    assert list(tests["name"]) == [range_test["name"]]
    assert tests["suggested lr"].iloc[0] == pytest.approx(range_test["suggestion"])
    assert json.loads(frame_of(at, "suggested lr").proto.columns)["suggested lr"]["type_config"]["format"] == "%.2e"
    assert "Learning-rate range tests" in texts(at.markdown)


def test_filters_come_back_from_the_url(trained_runs):
    # the browser writes a bound widget's value into the URL (tests/e2e checks it); the page reads it back
    again = open_page(experiment="tests", filter_model="mlp", filter="metrics.test_accuracy > 0.1")
    assert list(again.dataframe[0].value["name"]) == ["tiny-mlp"]
    assert again.text_input(key="filter").value == "metrics.test_accuracy > 0.1"


def test_an_unknown_experiment_in_the_link_is_named(trained_runs):
    at = open_page(experiment="nope")
    assert not at.exception and "No experiment named **nope**" in texts(at.warning)


def test_a_link_to_an_experiment_made_after_the_listing_opens_it(trained_runs):
    """The experiment listing is cached for seconds; a link to one created since must open it, not deny it."""
    from mlflow import MlflowClient

    assert open_page(experiment="tests").selectbox(key="experiment").value == "tests"  # the listing is now cached
    client = MlflowClient()
    experiment_id = client.create_experiment("made-after-the-listing")
    client.set_terminated(client.create_run(experiment_id, run_name="fresh").info.run_id)
    try:
        at = open_page(experiment="made-after-the-listing")
        assert not at.exception and not at.warning
        assert at.selectbox(key="experiment").value == "made-after-the-listing"
        assert list(at.dataframe[0].value["name"]) == ["fresh"]
    finally:
        client.delete_experiment(experiment_id)


def test_an_unknown_page_path_is_named():
    from dashboard import ui

    known = ["compare", "run_detail"]
    assert ui.unknown_page("http://127.0.0.1:8501/nope", "", known) == "nope"
    assert ui.unknown_page("http://host/base/nope", "/base", known) == "nope"
    # streamlit trims a known page's path off st.context.url, so a known page or the root leaves nothing
    assert ui.unknown_page("http://host/base", "/base", known) is None
    assert ui.unknown_page("http://127.0.0.1:8501", "", known) is None and ui.unknown_page(None, "", known) is None


def column_configs(at) -> dict:
    config = json.loads(at.dataframe[0].proto.columns)
    return {name: c for name, c in config.items() if not name.startswith("_")}


def test_a_link_chooses_orders_pins_and_sorts_the_columns(trained_runs):
    at = open_page(experiment="tests", columns=["status", "metrics.val_loss", "name", "params.seed"], pin="status",
                   sort="test acc", order="ascending")
    assert not at.exception and not at.error
    assert list(at.dataframe[0].proto.column_order)[:5] == ["open", "status", "val_loss", "name", "seed"]
    config = column_configs(at)
    assert {n for n, c in config.items() if not c.get("hidden")} == {"open", "status", "val_loss", "name", "seed"}
    assert {n for n, c in config.items() if c.get("pinned")} == {"open", "status"}  # the link leads what is pinned
    table = at.dataframe[0].value
    assert list(table["test acc"]) == sorted(table["test acc"])  # ascending, as the link says
    assert pd.api.types.is_numeric_dtype(table["seed"]) and pd.api.types.is_float_dtype(table["val_loss"])
    assert at.multiselect(key="columns").value == ["status", "metrics.val_loss", "name", "params.seed"]
    at.selectbox(key="sort").set_value("params.seed").run()  # a column not shown is still a sort key
    at.segmented_control(key="order").set_value("descending").run()
    table = at.dataframe[0].value
    assert list(table["seed"]) == sorted(table["seed"], reverse=True)


def test_without_a_link_the_standard_columns_show_newest_first(trained_runs):
    at = open_page(experiment="tests")
    assert at.multiselect(key="columns").value == ["name", "status", "test acc", "best val acc", "test F1", "model",
                                                   "lr", "training", "start"]
    table = at.dataframe[0].value
    assert list(table["start"]) == sorted(table["start"], reverse=True)


def test_a_duration_sorts_by_its_seconds_not_its_text(trained_runs):
    from dashboard import store, tables

    runs = store.runs()
    runs = runs[runs["run_id"].isin(trained_runs)].assign(duration_s=[9.0, 65.0, 12.0])  # "9s", "1m 05s", "12s"
    table = tables.runs_table(runs, pd.Series(dtype=float), "http://mlflow", sort=("training", True))
    assert list(table["training"]) == ["1m 05s", "12s", "9s"]  # as text, "9s" would lead


def test_sorting_keeps_a_sweeps_runs_under_it(sweep_runs):
    at = open_page(experiment="dashboard-sweep", sort="name", order="ascending")
    at.session_state["runs_table_unfolded"] = [sweep_runs["parent"]]
    at.run()
    assert list(at.dataframe[0].value["run_id"])[0] == sweep_runs["parent"]  # its runs follow it, in queue order
    assert list(at.dataframe[0].value["run_id"])[1:] == [sweep_runs[k] for k in ("run1", "run2", "run3")]
