"""Everyday edits on the run page through AppTest, each checked with MLflow's own client: rename, note, tags,
delete (and its refusals), restore, and a deleted run's link.

Run: .venv/bin/python -m pytest tests/dashboard/test_run_edits.py -q
"""
from __future__ import annotations

import pytest
from mlflow import MlflowClient

from pipeline import names
from pipeline.runs import lifecycle, tracking
from tests.dashboard.conftest import open_page, texts

EXPERIMENT = "dashboard-edits"


@pytest.fixture(scope="module")
def client(store) -> MlflowClient:
    return tracking.connect()


@pytest.fixture
def make_run(client):
    """make_run(name, status="FINISHED", **tags): a run of its own in EXPERIMENT, made with MLflow's client."""
    experiment = tracking.experiment_id(client, EXPERIMENT)

    def make(name: str, status: str = "FINISHED", **tags: str) -> str:
        run_id = client.create_run(experiment, run_name=name, tags=tags).info.run_id
        if status in names.ENDED:
            client.set_terminated(run_id, status)
        elif status != "RUNNING":
            client.update_run(run_id, status=status)
        return run_id
    return make


def submit(at, label: str):
    return next(b for b in at.button if b.label == label).click().run()


def test_rename_from_the_run_page(client, make_run):
    run_id = make_run("before-rename")
    make_run("taken-name")
    at = open_page("run_detail", run=run_id)
    assert not at.exception and at.title[0].value == "before-rename"
    at.text_input(key=f"rename-name-detail-{run_id}").set_value("after-rename")
    at = submit(at, "Rename")
    assert not at.exception and client.get_run(run_id).info.run_name == "after-rename"
    assert at.title[0].value == "after-rename"
    for bad, message in (("   ", "cannot be empty"), ("taken-name", "already exists")):
        at.text_input(key=f"rename-name-detail-{run_id}").set_value(bad)
        at = submit(at, "Rename")
        assert message in texts(at.error)
        assert client.get_run(run_id).info.run_name == "after-rename"  # nothing half-applied


def test_a_markdown_note_is_mlflows_own_and_shown_on_the_page(client, make_run):
    run_id = make_run("with-note")
    at = open_page("run_detail", run=run_id)
    at.text_area(key=f"note-text-{run_id}").set_value("# Baseline\nlr from the **range test**")
    at = submit(at, "Save note")
    assert client.get_run(run_id).data.tags[names.TAG_NOTE] == "# Baseline\nlr from the **range test**"
    assert "lr from the **range test**" in texts(at.markdown)
    at.text_area(key=f"note-text-{run_id}").set_value("  ")
    at = submit(at, "Save note")
    assert names.TAG_NOTE not in client.get_run(run_id).data.tags


def test_own_tags_added_changed_removed_and_system_tags_apart(client, make_run):
    run_id = make_run("with-tags", **{names.TAG_DEVICE: "cpu"})
    at = open_page("run_detail", run=run_id)
    system = next(d.value for d in at.dataframe if "tag" in d.value.columns)
    assert names.TAG_DEVICE in set(system["tag"])  # read-only, apart
    for value in ("ana", "ben"):
        at.text_input(key=f"tag-key-{run_id}").set_value("reviewed_by")
        at.text_input(key=f"tag-value-{run_id}").set_value(value)
        at = submit(at, "Set tag")
        assert client.get_run(run_id).data.tags["reviewed_by"] == value
    assert "`reviewed_by` = ben" in texts(at.markdown)
    at = at.button(key=f"tag-remove-{run_id}-0").click().run()
    assert "reviewed_by" not in client.get_run(run_id).data.tags


@pytest.mark.parametrize("key, message", [("", "needs a key"), ("runboard.device", "Runboard's and MLflow's own"),
                                          ("bad key?", "refused by MLflow")])
def test_a_tag_key_mlflow_or_runboard_refuses_is_one_message(client, make_run, key, message):
    run_id = make_run("bad-tags")
    at = open_page("run_detail", run=run_id)
    at.text_input(key=f"tag-key-{run_id}").set_value(key)
    at.text_input(key=f"tag-value-{run_id}").set_value("x")
    at = submit(at, "Set tag")
    assert not at.exception and message in texts(at.error) and len(at.error) == 1
    tags = client.get_run(run_id).data.tags
    assert not {k for k in tags if not k.startswith("mlflow.")}  # nothing stored


def test_delete_asks_naming_the_run_then_the_link_offers_restore(client, make_run):
    run_id = make_run("to-delete")
    at = open_page("run_detail", run=run_id)
    at = at.button(key=f"delete-detail-{run_id}").click().run()
    assert "**to-delete**" in texts(at.markdown)
    assert client.get_run(run_id).info.lifecycle_stage == "active"  # asked, not done
    at = at.button(key=f"delete-confirm-detail-{run_id}").click().run()
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert "was deleted on" in texts(at.warning) and "Restore it?" in texts(at.warning)
    at = at.button(key=f"restore-{run_id}").click().run()
    assert client.get_run(run_id).info.lifecycle_stage == "active"
    assert names.TAG_DELETED not in client.get_run(run_id).data.tags
    assert at.title[0].value == "to-delete"


@pytest.mark.parametrize("status", ["RUNNING", "SCHEDULED"])
def test_a_live_run_is_refused_with_its_reason(client, make_run, status):
    run_id = make_run(f"live-{status}", status=status)
    at = open_page("run_detail", run=run_id)
    at = at.button(key=f"delete-detail-{run_id}").click().run()
    assert f"is {status}: cancel it first" in texts(at.error)
    assert not [b for b in at.button if b.key == f"delete-confirm-detail-{run_id}"]
    assert client.get_run(run_id).info.lifecycle_stage == "active"
    client.set_terminated(run_id, "KILLED")  # out of any queue


def test_a_run_behind_a_registered_version_is_deleted_only_after_naming_it(client, make_run):
    run_id = make_run("registered-source")
    client.create_registered_model("edits-model")
    client.create_model_version("edits-model", f"runs:/{run_id}/model", run_id=run_id)
    at = open_page("run_detail", run=run_id)
    at = at.button(key=f"delete-detail-{run_id}").click().run()
    assert "edits-model v1 (run registered-source)" in texts(at.warning)
    assert at.button(key=f"delete-confirm-detail-{run_id}").disabled
    at.checkbox(key=f"delete-versions-ok-detail-{run_id}").check().run()
    at.button(key=f"delete-confirm-detail-{run_id}").click().run()
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"


def test_a_sweep_parent_takes_its_runs_along_after_saying_how_many(client, make_run):
    parent = make_run("a-sweep", **{names.TAG_SWEEP: "grid"})
    children = [make_run(f"a-sweep-{i}", **{names.TAG_SWEEP_ID: parent, names.TAG_PARENT: parent}) for i in (1, 2)]
    from dashboard import store

    plan = store.deletion_plan([parent])
    assert set(plan.children) == set(children) and not plan.refused
    store.delete_runs([parent])
    assert {client.get_run(r).info.lifecycle_stage for r in [parent, *children]} == {"deleted"}
    assert sorted(store.restore_runs([parent])) == ["a-sweep", "a-sweep-1", "a-sweep-2"]
    assert {client.get_run(r).info.lifecycle_stage for r in [parent, *children]} == {"active"}
