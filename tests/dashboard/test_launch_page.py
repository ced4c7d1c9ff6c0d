"""The Launch page through AppTest: the form from RunConfig, refused values, clone, sweep, the live queue.

Everything it queues is cancelled before the test ends, so no worker test later trains it.
Run: .venv/bin/python -m pytest tests/dashboard/test_launch_page.py -q
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from urllib.parse import unquote

import pytest
from mlflow.entities import Metric
from PIL import Image

from pipeline.runs import lifecycle
from pipeline import names, settings
from pipeline.queue import jobs
from pipeline.runs import tracking
from pipeline.config import ConfigError, RunConfig
from tests.dashboard.conftest import figures, open_page, texts

EXPERIMENT = "launch-page"


@pytest.fixture(scope="module")
def client(store):
    client = tracking.connect()
    tracking.experiment_id(client, EXPERIMENT)  # an option of the picker (AppTest cannot type a new one)
    return client


@pytest.fixture
def queued(client):
    """Run ids the test queued (directly or through the page): cancelled at the end."""
    made: list[str] = []
    yield made
    for run in jobs.unfinished(client):
        if run.info.run_id in made or client.get_experiment(run.info.experiment_id).name == EXPERIMENT:
            jobs.cancel(run.info.run_id, client)
            if client.get_run(run.info.run_id).info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "KILLED")


def launch_button(at):
    return next(b for b in at.button if b.label == "Launch")


def test_form_is_built_from_runconfig_with_image_folders_from_the_data_root(store, client):
    for name, classes in (("flowers", ("roses", "tulips")), ("lonely", ("only",)), ("nested/pets", ("cat", "dog"))):
        for label in classes:
            folder = store / "data" / name / label
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(folder / "0.png")
    at = open_page("launch")
    assert not at.exception and not at.error
    labels = {w.label for kind in (at.selectbox, at.text_input, at.number_input, at.checkbox) for w in kind}
    for f in dataclasses.fields(RunConfig):
        assert f.name.replace("_", " ") in labels, f.name
    dataset = at.selectbox(key="launch.dataset")
    assert dataset.value == "digits"
    assert dataset.options[:4] == ["digits", "mnist", "fashion-mnist", "cifar10"]
    assert "imagefolder:flowers" in dataset.options and "imagefolder:nested/pets" in dataset.options
    assert not any("lonely" in o for o in dataset.options)  # one class is not a dataset
    assert at.selectbox(key="launch.model").options == ["mlp", "cnn", "resnet18", "mobilenet_v3_small"]
    assert at.text_input(key="launch.lr").value == "0.003"
    assert at.number_input(key="launch.epochs").value == RunConfig().epochs


def test_a_refused_value_shows_the_cli_message_and_launch_is_disabled(client):
    at = open_page("launch")
    at.text_input(key="launch.lr").set_value("-1").run()
    with pytest.raises(ConfigError) as refused:
        RunConfig(lr=-1.0)
    assert texts(at.error) == str(refused.value) == "lr must be > 0 and <= 10, got -1.0"
    cli = subprocess.run([sys.executable, "-m", "pipeline", "submit", "--lr", "-1"], capture_output=True, text=True)
    assert cli.returncode == 2 and cli.stderr.strip() == f"error: {refused.value}"  # the same words
    assert launch_button(at).disabled
    at.text_input(key="launch.lr").set_value("abc").run()
    assert "lr must be float, got 'abc'" in texts(at.error)


def test_launch_queues_a_scheduled_run_and_cancel_removes_it(client, queued):
    at = open_page("launch")
    at.number_input(key="launch.epochs").set_value(1)
    at.selectbox(key="launch.model").set_value("mlp")
    at.selectbox(key="launch.experiment").set_value(EXPERIMENT)
    at.text_input(key="launch.run_name").set_value("from-the-browser").run()
    launch_button(at).click().run()
    assert not at.exception and "Queued run" in texts(at.success)
    run = next(r for r in jobs.queued(client) if r.info.run_name == "from-the-browser")
    queued.append(run.info.run_id)
    assert run.data.params == RunConfig(epochs=1, model="mlp").to_params()
    assert f"{len(jobs.queued(client))} queued" in at.subheader[0].value  # ours, and any other test's left queued
    run_id = run.info.run_id
    at.button(key=f"cancel-queue-{run_id}").click().run()  # one click only asks, with the run's progress
    assert client.get_run(run_id).info.status == "SCHEDULED"
    assert "Stop from-the-browser?" in texts(at.markdown) and "queued, 0 of 1 epochs trained" in texts(at.markdown)
    at.button(key=f"cancel-keep-queue-{run_id}").click().run()
    assert "Stop from-the-browser?" not in texts(at.markdown) and client.get_run(run_id).info.status == "SCHEDULED"
    at.button(key=f"cancel-queue-{run_id}").click().run()
    at.button(key=f"cancel-confirm-queue-{run_id}").click().run()
    assert client.get_run(run_id).info.status == "KILLED"


def test_the_queue_says_why_a_blocked_worker_leaves_runs_waiting(client, queued):
    """A worker whose launcher cannot start runs (Ray refusing its token) tags the queued runs with why
    (tests/test_jobs.py checks that): the queue shows it instead of "wait for a free worker slot"."""
    run_id = jobs.submit(RunConfig(epochs=1, model="mlp", experiment=EXPERIMENT, run_name="waits"), client=client)
    queued.append(run_id)
    why = "Ray at http://head:8265 refused the job: token authentication is on"
    lifecycle.set_tags(client, run_id, {names.TAG_BLOCKED: why})
    at = open_page("launch")
    assert not at.exception and f"The worker cannot start queued runs:** {why}" in texts(at.error)


def test_clone_prefills_the_form_from_a_runs_params(client, queued):
    source = RunConfig(model="mlp", lr=0.01, batch_size=32, optimizer="sgd", experiment=EXPERIMENT,
                       register="cloned-model")
    run_id = jobs.submit(source, client=client)
    queued.append(run_id)
    at = open_page("launch", clone=run_id)
    assert not at.exception and "Cloned from" in texts(at.info)
    assert at.selectbox(key="launch.model").value == "mlp"
    assert at.selectbox(key="launch.optimizer").value == "sgd"
    assert at.text_input(key="launch.lr").value == "0.01"
    assert at.number_input(key="launch.batch_size").value == 32
    assert at.selectbox(key="launch.experiment").value == EXPERIMENT
    assert at.text_input(key="launch.register").value == "cloned-model"
    assert not launch_button(at).disabled
    missing = open_page("launch", clone="0" * 32)
    assert not missing.exception and "Cannot clone" in texts(missing.error)


def test_sweep_queues_runs_under_a_parent_and_links_to_compare(client, queued):
    at = open_page("launch")
    at.selectbox(key="launch.experiment").set_value(EXPERIMENT)
    at.text_input(key="sweep.lr").set_value("1e-3, 1e-2")
    at.text_input(key="sweep.batch_size").set_value("32")
    at.selectbox(key="sweep.field").set_value("optimizer").run()
    at.multiselect(key="sweep.values.optimizer").set_value(["sgd", "adamw"]).run()
    preview = at.dataframe[0].value
    assert len(preview) == 4 and set(preview["optimizer"]) == {"sgd", "adamw"}
    at.button(key="sweep.go").click().run()
    assert not at.exception and "sweep of 4 runs" in texts(at.success)
    runs = [r for r in jobs.queued(client) if names.TAG_SWEEP_ID in r.data.tags
            and client.get_experiment(r.info.experiment_id).name == EXPERIMENT]
    queued.extend(r.info.run_id for r in runs)
    assert len(runs) == 4 and len({r.data.tags[names.TAG_SWEEP_ID] for r in runs}) == 1
    link = next(p for p in at.get("page_link") if "Compare" in p.proto.label)
    assert link.proto.page == "compare"
    assert sorted(unquote(link.proto.query_string).removeprefix("runs=").split(",")) == \
        sorted(r.info.run_id for r in runs)
    at.radio(key="sweep.kind").set_value("random").run()
    at.number_input(key="sweep.n").set_value(3).run()
    assert len(at.dataframe[0].value) == 3


def test_live_view_shows_a_running_runs_progress_metrics_curve_and_log(client, queued, monkeypatch, tmp_path):
    run_id = jobs.submit(RunConfig(model="mlp", epochs=2, batch_size=64, experiment=EXPERIMENT,
                                   run_name="live-one"), client=client)
    queued.append(run_id)
    now = time.time()
    assert lifecycle.claim(client, run_id, lifecycle.Claim("vm:1", lifecycle.process_key(), now))
    lifecycle.set_tags(client, run_id, {names.TAG_WORKER: "vm:1", names.TAG_HEARTBEAT: f"{now:.0f}",
                                   names.TAG_STARTED: f"{now - 30:.3f}", names.TAG_STEPS_PER_EPOCH: 21,
                                   names.TAG_LOG_TAIL: "epoch 1/2:  48%|####  | 10/21"})
    client.update_run(run_id, "RUNNING")
    ms = int(now * 1000)
    client.log_batch(run_id, metrics=[Metric(names.TRAIN_LOSS_STEP, 2.0 / s, ms - (10 - s) * 500, s)
                                      for s in range(1, 11)])
    at = open_page("launch")
    assert not at.exception and not at.error
    assert "1 running" in at.subheader[0].value
    bar = at.get("progress")[0].proto
    assert bar.value == 100 * 10 // 42 and "epoch 1/2 · step 10/42 · ETA 16s" in bar.text  # 2 steps/s, 32 to go
    assert {m.label: m.value for m in at.metric}[names.TRAIN_LOSS_STEP] == "0.2"
    assert any(f["data"] and f["data"][0].get("name") == "live-one" for f in figures(at))
    assert "10/21" in at.code[0].value
    assert any(e.label.startswith("Log (tail, as of ") and e.label.endswith("s ago)") for e in at.expander)  # the tail says how old it is
    monkeypatch.setenv("RUNBOARD_LOG_DIR", str(tmp_path))
    log = settings.log_dir() / run_id / names.LOG_NAME  # on the worker's machine: its log file, as it is now
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("epoch 1/2:  48%|####  | 10/21\repoch 1/2:  95%|######| 20/21\nepoch 1: train_loss 0.3\n")
    at = open_page("launch")
    assert "epoch 1: train_loss 0.3" in at.code[0].value and "10/21" not in at.code[0].value
    assert any(e.label == "Log (tail, live)" for e in at.expander)
    at.button(key=f"cancel-queue-{run_id}").click().run()
    assert names.TAG_CANCEL not in client.get_run(run_id).data.tags and "0 of 2 epochs trained" in texts(at.markdown)
    at.button(key=f"cancel-confirm-queue-{run_id}").click().run()
    assert names.TAG_CANCEL in client.get_run(run_id).data.tags
    assert at.button(key=f"stopping-queue-{run_id}").disabled


def test_unreachable_store_is_one_clear_error(unreachable_store):
    at = open_page("launch")
    assert not at.exception and "cannot be read" in texts(at.error)


def test_a_new_image_folder_appears_after_refresh(store, client):
    at = open_page("launch")
    for label in ("circles", "squares"):
        folder = store / "data" / "shapes-new" / label
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(folder / "0.png")
    at.run()
    assert "imagefolder:shapes-new" not in at.selectbox(key="launch.dataset").options  # the listing is cached
    at.button(key="refresh_folders").click().run()
    assert "imagefolder:shapes-new" in at.selectbox(key="launch.dataset").options


def test_a_chosen_image_folder_is_summarised_before_launching(store, client):
    folder = store / "data" / "summarised"
    for label, size in (("cats", (40, 30)), ("dogs", (50, 30)), ("dogs", (60, 45))):
        (folder / label).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (200, 100, 0)).save(folder / label / f"{size[0]}.png")
    (folder / "dogs" / "junk.png").write_bytes(b"not an image")
    at = open_page("launch")
    at.selectbox(key="launch.dataset").set_value("imagefolder:summarised").run()
    summary = texts(at.info)
    assert not at.exception and "**3 images** in 2 classes (cats 1, dogs 2)" in summary
    assert "from 40×30 to 60×45 px, RGB" in summary and "trains at **32×32 px**" in summary
    assert "1 unreadable file(s) will be skipped" in summary and "junk.png" in summary


def test_a_clone_of_an_image_folder_run_pins_the_size_it_resolved():
    from dashboard import launch_form

    params = {"dataset": "imagefolder:summarised", "image_size": "0", names.PARAM_IMAGE_SIZE_RESOLVED: "28x28"}
    assert launch_form.from_run(params)[0].image_size == 28
    assert launch_form.from_run({**params, "dataset": "digits"})[0].image_size == 0  # built-ins keep 0
    assert launch_form.from_run({**params, names.PARAM_IMAGE_SIZE_RESOLVED: "30x20"})[0].image_size == 0


def test_suggest_a_learning_rate_runs_the_range_test_outside_and_fills_lr(client):
    at = open_page("launch")
    at.selectbox(key="launch.experiment").set_value(EXPERIMENT).run()
    at.button(key="launch.suggest").click().run(timeout=240)
    assert not at.exception and not at.error, texts(at.error)
    result = at.session_state["launch.lr_find"]
    assert at.text_input(key="launch.lr").value == f"{result['suggestion']:.2g}"
    assert "Suggested lr" in texts(at.success)
    assert any(f["layout"]["xaxis"].get("type") == "log" for f in figures(at))
    run = client.get_run(result["run_id"])
    assert run.data.tags[names.TAG_KIND] == names.KIND_LR_FIND
    runs = open_page("runs")  # a range test's run (no epochs, no model) keeps the Runs page working
    assert not runs.exception and not runs.error
