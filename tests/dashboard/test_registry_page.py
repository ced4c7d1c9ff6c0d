"""Registry page under streamlit.testing AppTest, against the session's real store.

Every change made through the page is checked with a plain MlflowClient: what `mlflow ui` shows.
Uses tests/dashboard/conftest.py (empty_store, unreachable_store). Run:
.venv/bin/python -m pytest tests/dashboard/test_registry_page.py -q
"""
from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient
from streamlit.testing.v1 import AppTest

from dashboard import store
from pipeline.serving import registry

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "dashboard" / "views" / "registry.py")
NAME = "registry-page-tests"


@pytest.fixture(scope="module")
def model(trained_runs) -> str:
    """NAME v1 = the cnn run, with @champion."""
    registry.register_run(trained_runs[0], NAME)
    registry.set_alias(NAME, registry.CHAMPION, 1)
    return NAME


@pytest.fixture(autouse=True)
def fresh_listing():
    store.forget_model_versions()  # conftest clears every listing too; this page's own one, explicitly
    yield


def page(**query) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params.update(query)
    return at.run()


def assert_no_traceback(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def success(at: AppTest) -> str:
    return "\n".join(s.value for s in at.success)


def versions_table(at: AppTest):
    return next(d.value for d in at.dataframe if "version" in d.value.columns)


def test_versions_with_aliases_scores_and_links_to_their_runs(model, trained_runs):
    at = page()
    assert_no_traceback(at)
    table = versions_table(at)
    [row] = table[(table["model"] == NAME) & (table["version"] == 1)].to_dict("records")  # others may add v2
    run = MlflowClient().get_run(trained_runs[0])
    assert row["version"] == 1 and row["aliases"] == ["@champion"]
    assert row["test accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])
    assert row["test F1"] == pytest.approx(run.data.metrics["test_f1_macro"])
    assert (row["dataset"], row["architecture"]) == ("digits", "cnn")
    assert row["source run"] == f"run_detail?run={trained_runs[0]}"
    assert row["try it"] == f"playground?model={NAME}&ref=1"
    assert row["created (UTC)"] is not None
    models = next(d.value for d in at.dataframe if "latest version" in d.value.columns)
    assert "@champion → v1" in models[models["model"] == NAME]["aliases"].iloc[0]


def test_register_a_finished_run_from_the_page_with_an_alias(model, trained_runs):
    own = f"{NAME}-register"  # a model of this test's own: the other tests register the same runs into NAME
    if not MlflowClient().search_model_versions(f"name = '{own}'"):
        registry.register_run(trained_runs[0], own)
    store.forget_model_versions()
    at = page(register=trained_runs[2])  # the run detail page links here like this
    assert at.selectbox(key="register_run").value == trained_runs[2]
    at.selectbox(key="register_model").set_value(own)
    at.text_area(key="register_description").input("the mlp, for comparison")
    at.selectbox(key="register_alias").set_value("challenger")
    at = at.button(key="register_button").click().run()
    assert_no_traceback(at)
    assert f"as {own} v2; @challenger set" in success(at)
    client = MlflowClient()
    assert client.get_model_version(own, "2").description == "the mlp, for comparison"
    assert client.get_registered_model(own).aliases["challenger"] == 2
    table = versions_table(at)
    assert 2 in table[table["model"] == own]["version"].tolist()  # the table shows it at once


def test_register_as_a_new_model_and_refuse_a_duplicate(model, trained_runs):
    at = page(register=trained_runs[1])
    at.selectbox(key="register_model").set_value("+ new model…")
    at = at.run()
    assert at.text_input(key=f"register_new_name_{trained_runs[1]}").value == "digits-cnn"  # suggested from the run
    at.text_input(key=f"register_new_name_{trained_runs[1]}").input("registry-page-new")
    at = at.button(key="register_button").click().run()
    assert "as registry-page-new v1" in success(at)
    at.selectbox(key="register_run").set_value(trained_runs[1])
    at.selectbox(key="register_model").set_value("registry-page-new")
    at = at.button(key="register_button").click().run()
    assert_no_traceback(at)
    assert "already version 1 of 'registry-page-new'" in at.error[0].value


def test_an_unknown_run_in_the_url_is_explained(model):
    at = page(register="f" * 32)
    assert_no_traceback(at)
    assert "is not a finished run of this store" in at.warning[0].value


def test_move_and_remove_aliases(model, trained_runs):
    client = MlflowClient()
    if "2" not in {str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")}:
        registry.register_run(trained_runs[2], NAME)
    registry.set_alias(NAME, registry.CHAMPION, 1)
    at = page()
    at.selectbox(key="alias_model").set_value(NAME)
    at = at.run()
    at.selectbox(key="alias_name").set_value("champion")
    at.selectbox(key=f"alias_version_{NAME}_champion").set_value(2)
    at = at.run()
    if any(c.key == "alias_confirm" for c in at.checkbox):  # v2 scored lower: the page asks first
        at.checkbox(key="alias_confirm").check().run()
    assert at.button(key="alias_set").label == "Move @champion to v2"
    at = at.button(key="alias_set").click().run()
    assert_no_traceback(at)
    assert f"@champion of {NAME} moved from v1 to v2." in success(at)
    assert client.get_registered_model(NAME).aliases["champion"] == 2
    at.selectbox(key="alias_model").set_value(NAME)
    at = at.run()
    at.selectbox(key=f"alias_remove_{NAME}").set_value("champion")
    at = at.button(key="alias_remove").click().run()
    assert "Removed @champion" in success(at)
    assert "champion" not in client.get_registered_model(NAME).aliases
    registry.set_alias(NAME, registry.CHAMPION, 1)  # as the module fixture promised


def test_a_reserved_alias_is_an_error_on_the_page(model):
    at = page()
    at.selectbox(key="alias_model").set_value(NAME)
    at.selectbox(key="alias_name").set_value("other…")
    at = at.run()
    at.text_input(key="alias_other").input("latest")
    at = at.button(key="alias_set").click().run()
    assert_no_traceback(at)
    assert "reserved" in at.error[0].value


def test_describe_a_model_and_a_version(model):
    at = page()
    at.selectbox(key="describe_target").set_value((NAME, None))
    at = at.run()
    at.text_area(key=f"describe_text_{NAME}_None").input("Digits classifiers for the page tests")
    at = at.button(key="describe_save").click().run()
    assert_no_traceback(at)
    assert f"Saved the description of {NAME}." in success(at)
    assert MlflowClient().get_registered_model(NAME).description == "Digits classifiers for the page tests"
    at.selectbox(key="describe_target").set_value((NAME, 1))
    at = at.run()
    at.text_area(key=f"describe_text_{NAME}_1").input("first cnn")
    at = at.button(key="describe_save").click().run()
    assert MlflowClient().get_model_version(NAME, "1").description == "first cnn"
    table = versions_table(at)
    assert table[(table["model"] == NAME) & (table["version"] == 1)]["description"].iloc[0] == "first cnn"


def test_an_empty_registry_says_how_to_register(empty_store):
    at = page()
    assert_no_traceback(at)
    assert any("No registered models yet" in i.value and "--register" in i.value for i in at.info)


def test_an_unreachable_store_is_an_error_not_a_traceback(unreachable_store):
    at = page()
    assert_no_traceback(at)
    assert "cannot be read" in at.error[0].value


def test_reachable_through_the_apps_navigation(model):
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120).run()
    at = at.switch_page("views/registry.py").run()
    assert_no_traceback(at)
    assert at.title[0].value == "Model registry"


def test_the_name_suggestion_follows_the_chosen_run(model, trained_runs, sweep_runs):
    at = page(register=trained_runs[0])
    at.selectbox(key="register_model").set_value("+ new model…").run()
    assert not any(sweep_runs["parent"][:8] in o for o in at.selectbox(key="register_run").options)  # no model
    at.text_input(key=f"register_new_name_{trained_runs[0]}").input("my-own-name").run()
    at.selectbox(key="register_run").set_value(trained_runs[2]).run()
    assert at.text_input(key=f"register_new_name_{trained_runs[2]}").value == "digits-mlp"


def test_moving_an_alias_to_a_worse_version_asks_first_and_can_be_undone(model, trained_runs):
    client = MlflowClient()
    if "2" not in {str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")}:
        registry.register_run(trained_runs[2], NAME)
    accuracy = {v: client.get_run(client.get_model_version(NAME, v).run_id).data.metrics["test_accuracy"]
                for v in ("1", "2")}
    better, worse = sorted(accuracy, key=accuracy.get, reverse=True)
    registry.set_alias(NAME, registry.CHAMPION, better)
    at = page()
    at.selectbox(key="alias_model").set_value(NAME).run()
    assert at.selectbox(key=f"alias_version_{NAME}_champion").value == int(better)  # where it is, not the newest
    at.selectbox(key=f"alias_version_{NAME}_champion").set_value(int(worse)).run()
    shown = " ".join(m.value for m in at.markdown)
    assert f"v{better}: test accuracy" in shown and f"v{worse}: test accuracy" in shown  # both versions' scores
    if accuracy[worse] < accuracy[better]:
        assert "scored lower" in at.warning[0].value and at.button(key="alias_set").disabled
        at.checkbox(key="alias_confirm").check().run()
    at = at.button(key="alias_set").click().run()
    assert_no_traceback(at)
    assert client.get_registered_model(NAME).aliases["champion"] == int(worse)
    at = at.button(key="alias_undo").click().run()
    assert_no_traceback(at)
    assert client.get_registered_model(NAME).aliases["champion"] == int(better)
    assert "Undone" in success(at)
    registry.set_alias(NAME, registry.CHAMPION, 1)
