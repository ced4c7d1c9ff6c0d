"""People sign into the dashboard with their own MLflow users (RUNBOARD_SIGN_IN=mlflow, as `make cluster` starts
it) and the dashboard calls MLflow as them (issue 25): a READ user sees why each action is closed before any
click, an EDIT user launches and the run is theirs, and a wrong password is refused and guessing is throttled.
Rita's refusals are read (and cached) in the same process before eddie signs in: cached reads are keyed by person.

Run: .venv/bin/python -m pytest tests/cluster/test_people.py -q -m cluster
"""
from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from streamlit.testing.v1 import AppTest

from dashboard import auth
from dashboard.store import mlflow_internals
from pipeline import names
from pipeline.queue import jobs
from tests.cluster.test_auth import admin, call

pytestmark = pytest.mark.cluster

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
EXPERIMENT = "people"
PEOPLE = {"rita": "rita-reads-only-1", "eddie": "eddie-edits-runs-1"}  # READ (the default) and EDIT on EXPERIMENT
GRANT = "/api/3.0/mlflow/users/permissions/grant"


@pytest.fixture(scope="module")
def people(cluster) -> dict[str, str]:
    """Two users and an experiment with one finished run that eddie may edit."""
    url, login = cluster.tracking_uri, admin(cluster)
    client = MlflowClient(url)  # the service account's
    found = client.get_experiment_by_name(EXPERIMENT)
    experiment = found.experiment_id if found else client.create_experiment(EXPERIMENT)
    for user, password in PEOPLE.items():
        assert call(url, "/api/2.0/mlflow/users/create", *login, {"username": user, "password": password},
                    "POST") in (200, 400)  # 400: made by an earlier module run against the same server
    assert call(url, GRANT, *login, {"username": "eddie", "resource_type": "experiment", "resource_id": experiment,
                                     "permission": "EDIT"}, "POST") in (200, 400)  # 400: granted before
    run = client.create_run(experiment, run_name="people-finished").info.run_id
    client.set_terminated(run, "FINISHED")
    return {"run": run, EXPERIMENT: experiment}


@pytest.fixture(autouse=True)
def signing_in(monkeypatch):
    monkeypatch.setenv("RUNBOARD_SIGN_IN", "mlflow")
    monkeypatch.setattr(auth, "THROTTLE", auth.Throttle())  # the process's guesses are this test's alone
    st.cache_data.clear()


def signed_in(user: str, password: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and [t.label for t in at.text_input] == ["Username", "Password"]
    at.text_input[0].input(user)
    at.text_input[1].input(password or PEOPLE[user])
    return at.button[0].click().run()


def texts(elements) -> str:
    return " | ".join(str(getattr(e, "value", "")) + " " + str(getattr(e, "help", "") or "") for e in elements)


def on_launch_page(at: AppTest) -> AppTest:
    at.switch_page("views/launch.py").run()
    at.selectbox(key="launch.experiment").set_value(EXPERIMENT).run()
    return at


def test_a_read_user_is_told_before_any_click_what_needs_edit(people):
    at = signed_in("rita")
    assert not at.exception and "Signed in as **rita**" in texts(at.sidebar.caption)
    at = on_launch_page(at)
    assert "Signed in as rita: you can read this experiment; launching needs EDIT" in texts(at.info)
    launch = next(b for b in at.button if b.label == "Launch")
    assert launch.disabled
    at.switch_page("views/run_detail.py")
    at.query_params["run"] = people["run"]
    at.run()
    assert not at.exception
    assert "changing runs needs EDIT" in texts(at.caption)  # the tags' section, instead of its form
    assert next(b for b in at.button if b.label == "Delete run").disabled
    assert "Tag key" not in [t.label for t in at.text_input] and "New name" not in [t.label for t in at.text_input]
    rita = mlflow_internals.client_as(MlflowClient().tracking_uri, "rita", PEOPLE["rita"])
    with pytest.raises(MlflowException, match="Permission denied"):  # and over REST, MLflow itself refuses
        rita.set_tag(people["run"], "reviewed_by", "rita")


def test_an_edit_user_launches_and_the_run_is_theirs(people):
    at = on_launch_page(signed_in("eddie"))
    assert "launching needs EDIT" not in texts(at.info)
    before = {r.info.run_id for r in MlflowClient().search_runs([people[EXPERIMENT]])}
    next(b for b in at.button if b.label == "Launch").click().run()
    assert not at.exception, at.exception
    queued = [r for r in MlflowClient().search_runs([people[EXPERIMENT]]) if r.info.run_id not in before]
    assert len(queued) == 1 and queued[0].data.tags[names.TAG_USER] == "eddie"
    jobs.cancel(queued[0].info.run_id)  # the package's worker (when running) need not train it
    eddie = mlflow_internals.client_as(MlflowClient().tracking_uri, "eddie", PEOPLE["eddie"])
    eddie.set_tag(people["run"], "reviewed_by", "eddie")  # over REST too, EDIT may change the experiment's runs
    assert MlflowClient().get_run(people["run"]).data.tags["reviewed_by"] == "eddie"


def test_wrong_passwords_are_refused_then_throttled_without_asking_the_server(people):
    at = signed_in("rita", "not-her-password")
    assert "Wrong username or password." in texts(at.error) and "person" not in at.session_state
    for _ in range(5):
        at.text_input[1].input("still-not-it")
        at.button[0].click().run()
    assert "Too many wrong passwords from your address" in texts(at.error)
    at.text_input[1].input(PEOPLE["rita"])  # even the right one waits now
    at.button[0].click().run()
    assert "Too many wrong passwords" in texts(at.error) and "person" not in at.session_state
