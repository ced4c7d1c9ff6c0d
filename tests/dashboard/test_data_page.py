"""The Data page and lineage on the other pages, through AppTest, on a real audit of a planted folder.

Everything the page queues is cancelled before the test ends. Run:
.venv/bin/python -m pytest tests/dashboard/test_data_page.py -q
"""
from __future__ import annotations

import pytest
from mlflow.entities import RunTag

from pipeline import names, settings
from pipeline.imaging.lineage import short
from pipeline.queue import jobs
from pipeline.runs import tracking
from tests.dashboard.conftest import open_page, texts
from tests.planted import FOLDER, plain_folder


def image_captions(at) -> str:
    """The captions under st.image pictures."""
    return " | ".join(caption for element in at.get("image") for caption in element.captions)


def sparse_folder(root) -> None:
    """Two classes, one of 3 images: too few for 4 folds, enough for 3."""
    plain_folder(root, {"many": 6, "few": 3})


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


@pytest.fixture
def queued():
    """Queue runs this test made through the page: cancelled at the end, so no worker trains them later."""
    client = tracking.connect()
    before = {r.info.run_id for r in jobs.unfinished(client)}
    yield client
    for run in jobs.unfinished(client):
        if run.info.run_id not in before:
            jobs.cancel(run.info.run_id, client)


def test_the_data_page_shows_the_latest_audit_with_galleries_and_downloads(planted, audited):
    at = open_page("data", folder=f"imagefolder:{FOLDER}")
    assert not at.exception and not at.error, at.exception
    assert at.selectbox(key="data_folder").value == f"imagefolder:{FOLDER}"
    shown = {m.label: m.value for m in at.metric}
    assert shown["files"] == "82" and int(shown["leaks"]) >= 1 and int(shown["label issues"]) >= 2
    assert [c for c in at.get("plotly_chart")], "the class-balance chart"
    captions = image_captions(at)
    for path in planted["wrong"]:
        assert f"{path}: given zero, suggested one" in captions
    assert planted["leak"][0] in captions and planted["leak"][1] in captions
    assert {b.label for b in at.get("download_button")} >= {"Download label_issues.csv", "Download leaks.csv"} or \
        len(at.get("download_button")) == 4


def test_train_without_the_suspects_queues_a_run_with_an_exclusion_list(planted, audited, queued):
    at = open_page("data", folder=f"imagefolder:{FOLDER}")
    key = f"exclude.{audited}"
    at.checkbox(key=f"{key}.use").check().run()
    at.slider(key=f"{key}.at").set_value(0.5).run()
    go = at.button(key=f"{key}.go")
    assert go.label.startswith("Train without ") and not go.disabled
    go.click().run()
    assert not at.exception and not at.error
    run_id = at.session_state[f"{key}.queued"]
    run = queued.get_run(run_id)
    listed = settings.data_root() / run.data.params["exclude"]
    assert listed.is_file() and ".runboard/exclusions/" in listed.as_posix()
    lines = listed.read_text().splitlines()
    assert lines[0].startswith("# ") and f"audit {audited[:8]}" in lines[0]
    assert set(planted["wrong"]) <= set(lines[1:])
    assert (planted["root"] / planted["wrong"][0]).is_file()  # nothing of the user's moved or deleted


def test_the_audit_form_queues_an_audit_and_refuses_a_folder_too_small_for_its_folds(store, queued):
    sparse_folder(store / "data" / "sparse")
    at = open_page("data", folder="imagefolder:sparse")
    assert "no audit yet" in texts(at.info)
    at.number_input(key="audit.folds.imagefolder:sparse").set_value(4)
    at.button[0].click().run()
    assert "too few in few (3)" in texts(at.error)
    at.number_input(key="audit.folds.imagefolder:sparse").set_value(3)
    at.button[0].click().run()
    assert "Queued audit" in texts(at.success)
    [audit] = [r for r in jobs.unfinished(queued) if r.data.tags.get(names.TAG_AUDIT_FOLDER) == "sparse"]
    assert audit.data.tags[names.TAG_KIND] == names.KIND_AUDIT


def test_the_launch_pages_audit_tab_queues_the_same_audit_with_the_forms_model_and_epochs(store, queued):
    sparse_folder(store / "data" / "sparse-launch")
    at = open_page("launch")
    assert "pick one as the dataset above" in texts(at.info)  # digits: nothing to audit
    at.selectbox(key="launch.dataset").set_value("imagefolder:sparse-launch").run()
    at.selectbox(key="launch.model").set_value("mlp").run()
    at.number_input(key="launch.epochs").set_value(2).run()
    at.number_input(key="audit_folds").set_value(4).run()
    assert "4 fold models × 2 epochs of mlp" in texts(at.markdown)
    button(at, "Queue an audit of 4 folds").click().run()
    assert "too few in few (3)" in texts(at.error)  # refused in place, before anything is queued
    assert not [r for r in jobs.unfinished(queued) if r.data.tags.get(names.TAG_AUDIT_FOLDER) == "sparse-launch"]
    at.number_input(key="audit_folds").set_value(3).run()
    button(at, "Queue an audit of 3 folds").click().run()
    assert not at.exception and "Queued audit" in texts(at.success)
    [audit] = [r for r in jobs.unfinished(queued) if r.data.tags.get(names.TAG_AUDIT_FOLDER) == "sparse-launch"]
    assert audit.data.tags[names.TAG_KIND] == names.KIND_AUDIT
    assert audit.data.params["model"] == "mlp" and audit.data.params["epochs"] == "2"
    assert audit.info.run_id in texts(at.success)


def test_the_run_page_says_what_a_run_trained_on(trained_run):
    run = tracking.connect().get_run(trained_run)
    at = open_page("run_detail", run=trained_run)
    assert not at.exception
    digest = short(run.data.tags[names.TAG_DATASET_DIGEST])
    assert f"trained on digits · digest {digest} · 1,797 files" in texts(at.caption)


def test_compare_warns_when_runs_trained_on_different_digests_of_one_dataset(trained_run):
    client = tracking.connect()
    experiment = tracking.experiment_id(client, "lineage-compare")
    ids = []
    for digest in ("aaaaaa11", "bbbbbb22"):
        run_id = client.create_run(experiment, run_name=f"on-{digest[:2]}").info.run_id
        client.log_batch(run_id, tags=[RunTag(names.TAG_DATASET_NAME, "imagefolder:pets"),
                                       RunTag(names.TAG_DATASET_DIGEST, digest)])
        client.set_terminated(run_id, "FINISHED")
        ids.append(run_id)
    at = open_page("compare", runs=",".join(ids))
    assert "The folder changed between these runs" in texts(at.warning)
    assert "aaaaaa, bbbbbb" in texts(at.warning)
    same = open_page("compare", runs=f"{ids[0]},{trained_run}")
    assert "folder changed" not in texts(same.warning)


def test_the_registry_shows_each_versions_dataset_digest(trained_run):
    digest = tracking.connect().get_run(trained_run).data.tags[names.TAG_DATASET_DIGEST]
    at = open_page("registry")
    assert not at.exception
    frames = [df.value for df in at.dataframe if "dataset digest" in df.value.columns]
    assert frames and short(digest) in set(frames[0]["dataset digest"])
