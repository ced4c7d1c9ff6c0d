"""The Registry page's tags and deletions under AppTest, each checked with a plain MlflowClient (what
`mlflow ui` shows): model and version tags, a refused key, a version deleted with its alias moved or gone,
a model deleted only after its aliases are confirmed.

Run: .venv/bin/python -m pytest tests/dashboard/test_registry_edits.py -q
"""
from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from streamlit.testing.v1 import AppTest

from dashboard import store
from pipeline.runs import tracking
from pipeline.serving import registry

PAGE = str(Path(__file__).resolve().parents[2] / "dashboard" / "views" / "registry.py")
NAME = "registry-edits-tests"


@pytest.fixture
def model(trained_run) -> str:
    """NAME with three versions of the same run's model, @champion on v1 and @challenger on v2, made afresh."""
    client = tracking.connect()
    if client.search_registered_models(f"name = '{NAME}'"):
        client.delete_registered_model(NAME)
    client.create_registered_model(NAME)
    for _ in range(3):  # MLflow's own call: the page's register form refuses a run registered already
        client.create_model_version(NAME, f"runs:/{trained_run}/model", run_id=trained_run)
    registry.set_alias(NAME, "champion", 1)
    registry.set_alias(NAME, "challenger", 2)
    store.forget_model_versions()
    return NAME


def page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    return at.run()


def errors(at) -> str:
    return " | ".join(e.value for e in at.error)


def test_tags_on_a_model_and_a_version(model):
    client = MlflowClient()
    at = page()
    at.selectbox(key="tags_target").set_value((model, None)).run()
    at.text_input(key=f"registry-tag-key-{model}_None").set_value("dataset")
    at.text_input(key=f"registry-tag-value-{model}_None").set_value("digits")
    at = next(b for b in at.button if b.label == "Set tag").click().run()
    assert client.get_registered_model(model).tags == {"dataset": "digits"}
    at.selectbox(key="tags_target").set_value((model, 2)).run()
    at.text_input(key=f"registry-tag-key-{model}_2").set_value("reviewed_by")
    at.text_input(key=f"registry-tag-value-{model}_2").set_value("ana")
    at = next(b for b in at.button if b.label == "Set tag").click().run()
    assert client.get_model_version(model, "2").tags == {"reviewed_by": "ana"}
    assert any("`reviewed_by` = ana" in m.value for m in at.markdown)
    at = at.button(key=f"registry-tag-remove-{model}_2-0").click().run()
    assert client.get_model_version(model, "2").tags == {}


@pytest.mark.parametrize("key, message", [("  ", "needs a key"), ("bad key?", "refused by MLflow")])
def test_a_tag_key_that_is_refused_is_one_message_and_nothing_stored(model, key, message):
    at = page()
    at.selectbox(key="tags_target").set_value((model, 1)).run()
    at.text_input(key=f"registry-tag-key-{model}_1").set_value(key)
    at = next(b for b in at.button if b.label == "Set tag").click().run()
    assert not at.exception and message in errors(at) and len(at.error) == 1
    assert MlflowClient().get_model_version(model, "1").tags == {}


def test_delete_a_version_moving_its_alias_first(model):
    at = page()
    at.selectbox(key="delete_version_target").set_value((model, 1)).run()
    assert "holds @champion" in " ".join(w.value for w in at.warning)
    assert at.button(key="delete_version").disabled  # asks first
    at.radio(key=f"delete_version_how_{model}_1").set_value("move them to another version").run()
    at.selectbox(key=f"delete_version_move_{model}_1").set_value(3).run()
    at.checkbox(key=f"delete_version_ok_{model}_1").check().run()
    at.button(key="delete_version").click().run()
    client = MlflowClient()
    assert sorted(int(v.version) for v in client.search_model_versions(f"name = '{model}'")) == [2, 3]
    assert client.get_registered_model(model).aliases == {"champion": 3, "challenger": 2}


def test_delete_a_version_with_its_alias(model):
    at = page()
    at.selectbox(key="delete_version_target").set_value((model, 2)).run()
    at.radio(key=f"delete_version_how_{model}_2").set_value("delete them with it").run()
    at.checkbox(key=f"delete_version_ok_{model}_2").check().run()
    at.button(key="delete_version").click().run()
    client = MlflowClient()
    assert sorted(int(v.version) for v in client.search_model_versions(f"name = '{model}'")) == [1, 3]
    assert client.get_registered_model(model).aliases == {"champion": 1}


def test_a_model_with_aliases_is_deleted_only_after_confirming_them(model):
    with pytest.raises(registry.RegistryError, match="still has aliases"):
        registry.delete_model(model)
    at = page()
    at.selectbox(key="delete_model_target").set_value(model).run()
    assert "@champion → v1" in " ".join(w.value for w in at.warning)
    at.checkbox(key=f"delete_model_sure_{model}").check().run()
    assert at.button(key="delete_model").disabled  # the aliases are not confirmed yet
    at.checkbox(key=f"delete_model_ok_{model}").check().run()
    at.button(key="delete_model").click().run()
    assert not MlflowClient().search_registered_models(f"name = '{model}'")
