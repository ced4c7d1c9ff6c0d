"""Everyday edits from the Runs table through AppTest, checked with MLflow's own client: the note's first line,
search and tag filter, rename and delete of selected rows, the Deleted view and restore.

Run: .venv/bin/python -m pytest tests/dashboard/test_runs_table_edits.py -q
"""
from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from dashboard import run_search
from pipeline import names
from pipeline.runs import tracking
from tests.dashboard.conftest import open_page, texts

EXPERIMENT = "dashboard-table-edits"
LONG_NOTE = "Baseline for the **augment** study: " + "x" * 80 + "\nsecond line"


@pytest.fixture(scope="module")
def client(store) -> MlflowClient:
    return tracking.connect()


@pytest.fixture(scope="module")
def runs(client) -> dict[str, str]:
    """Three ended runs: one with a long note, one tagged reviewed_by=ana, one plain."""
    experiment = tracking.experiment_id(client, EXPERIMENT)
    made = {}
    for name, tags in (("noted", {names.TAG_NOTE: LONG_NOTE}), ("reviewed", {"reviewed_by": "ana"}),
                       ("plain", {})):
        made[name] = client.create_run(experiment, run_name=name, tags=tags).info.run_id
        client.set_terminated(made[name], "FINISHED")
    return made


def select(at, names_wanted: set[str]):
    table = at.dataframe[0].value
    at.session_state["runs_table"] = {"selection": {"rows": [i for i, n in enumerate(table["name"])
                                                             if n in names_wanted], "columns": []}}
    return at.run()


def test_the_note_shows_shortened_and_search_and_tag_filter_find_runs(runs):
    at = open_page(experiment=EXPERIMENT)
    assert not at.exception and not at.error
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["noted", "note"] == run_search.short_note(LONG_NOTE)
    assert len(table.loc["noted", "note"]) == run_search.NOTE_CHARS and table.loc["noted", "note"].endswith("…")
    config = {n: c for n, c in json.loads(at.dataframe[0].proto.columns).items() if not n.startswith("_")}
    assert config["start"].get("hidden") and not config["note"].get("hidden")  # the note takes the start's place
    assert sum(c["width"] for c in config.values() if not c.get("hidden")) <= 905  # still fits 1,400 px
    at.text_input(key="search").set_value("AUGMENT").run()
    assert list(at.dataframe[0].value["name"]) == ["noted"]
    at.text_input(key="search").set_value("").run()
    assert "reviewed_by=ana" in at.multiselect(key="filter_tag").options
    at.multiselect(key="filter_tag").set_value(["reviewed_by=ana"]).run()
    assert list(at.dataframe[0].value["name"]) == ["reviewed"]


def test_the_search_and_tag_filter_come_back_from_the_url(runs):
    at = open_page(experiment=EXPERIMENT, search="reviewed_by=ana")
    assert list(at.dataframe[0].value["name"]) == ["reviewed"]


def test_rename_a_selected_row(client, runs):
    at = select(open_page(experiment=EXPERIMENT), {"plain"})
    at.text_input(key=f"rename-name-table-{runs['plain']}").set_value("reviewed")
    at = next(b for b in at.button if b.label == "Rename").click().run()
    assert "already exists" in texts(at.error) and client.get_run(runs["plain"]).info.run_name == "plain"
    at.text_input(key=f"rename-name-table-{runs['plain']}").set_value("plain-renamed")
    at = next(b for b in at.button if b.label == "Rename").click().run()
    assert client.get_run(runs["plain"]).info.run_name == "plain-renamed"
    assert "plain-renamed" in set(at.dataframe[0].value["name"])
    client.update_run(runs["plain"], name="plain")


def test_delete_selected_rows_then_restore_them_from_the_deleted_view(client, runs):
    at = select(open_page(experiment=EXPERIMENT), {"noted", "reviewed"})
    at = at.button(key="delete-table").click().run()
    assert "**noted**" in texts(at.markdown) and "**reviewed**" in texts(at.markdown)
    at = at.button(key="delete-confirm-table").click().run()
    assert {client.get_run(runs[n]).info.lifecycle_stage for n in ("noted", "reviewed")} == {"deleted"}
    assert list(at.dataframe[0].value["name"]) == ["plain"]  # the table follows at once
    at.segmented_control(key="view").set_value("Deleted").run()
    deleted = at.dataframe[0].value
    assert set(deleted["name"]) == {"noted", "reviewed"} and deleted["deleted"].str.endswith("UTC").all()
    at.session_state["deleted_table"] = {"selection": {"rows": list(range(len(deleted))), "columns": []}}
    at.run()
    at.button(key="restore_selected").click().run()
    assert {client.get_run(runs[n]).info.lifecycle_stage for n in ("noted", "reviewed")} == {"active"}
    assert "No deleted runs" in texts(at.info)


def test_with_every_run_deleted_the_deleted_view_is_still_reachable(empty_store):
    at = open_page()
    assert "No runs yet: launch one." in texts(at.info)
    assert any(link.proto.label == "Deleted runs" for link in at.get("page_link"))
    at = open_page(view="Deleted")
    assert not at.exception and "No deleted runs in this experiment." in texts(at.info)
