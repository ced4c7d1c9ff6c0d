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
    [row] = table[(table["model"] == NAME) & (table["version"] == 1)].to_dict("records")  # other tests add v2
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
    name = "registry-page-register"  # its own model: other tests add NAME v2 in any order (pytest-randomly)
    registry.register_run(trained_runs[0], name)
    at = page(register=trained_runs[2])  # the run detail page links here like this
    assert at.selectbox(key="register_run").value == trained_runs[2]
    at.selectbox(key="register_model").set_value(name)
    at.text_area(key=f"register_description_{trained_runs[2]}").input("the mlp, for comparison")
    at.selectbox(key=f"register_alias_{trained_runs[2]}").set_value("challenger")
    at = at.button(key="register_button").click().run()
    assert_no_traceback(at)
    assert f"as {name} v2; @challenger set" in success(at)
    client = MlflowClient()
    assert client.get_model_version(name, "2").description == "the mlp, for comparison"
    assert client.get_registered_model(name).aliases["challenger"] == 2
    table = versions_table(at)
    assert 2 in table[table["model"] == name]["version"].tolist()  # the table shows it at once


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


@pytest.fixture(scope="module")
def scored_runs(store):
    """Two finished runs with only scores (no model), in their own experiment: the best one older, a worse one the
    newest; removed afterwards so no other page test sees them."""
    import time

    from mlflow.entities import Metric

    from pipeline.runs import tracking

    client = tracking.connect()
    experiment = tracking.experiment_id(client, "registry-form")
    made = {}
    for name, accuracy in (("best-scored", 0.999), ("newest-worse", 0.01)):
        run_id = client.create_run(experiment, run_name=name).info.run_id
        client.log_batch(run_id, metrics=[Metric("test_accuracy", accuracy, int(time.time() * 1000), 2)])
        client.set_terminated(run_id, "FINISHED")
        made[name] = run_id
        time.sleep(0.01)  # distinct start times: newest first
    yield made
    for run_id in made.values():
        client.delete_run(run_id)


def test_the_register_form_starts_at_the_best_finished_run_not_the_newest(model, scored_runs):
    at = page()
    assert_no_traceback(at)
    box = at.selectbox(key="register_run")
    position = {name: next(i for i, o in enumerate(box.options) if o.endswith(run_id[:8]))
                for name, run_id in scored_runs.items()}
    assert position["newest-worse"] < position["best-scored"]  # listed newest first, yet not the start
    assert box.value == scored_runs["best-scored"]


def _labelled(widgets, label: str):
    [widget] = [w for w in widgets if w.label == label]
    return widget


def test_a_second_registration_starts_from_an_empty_form(model, trained_runs):
    name, client = "registry-form-tests", MlflowClient()
    description = lambda at: _labelled(at.text_area, "Version description (optional)")  # noqa: E731
    alias = lambda at: _labelled(at.selectbox, "Then set alias")  # noqa: E731
    at = page(register=trained_runs[0])
    at = at.selectbox(key="register_model").set_value("+ new model…").run()
    at.text_input(key=f"register_new_name_{trained_runs[0]}").input(name)
    description(at).input("cnn, 2 epochs, the first")
    alias(at).set_value("challenger")
    at = at.button(key="register_button").click().run()
    assert f"as {name} v1; @challenger set" in success(at)
    at = at.selectbox(key="register_run").set_value(trained_runs[2]).run()
    at = at.selectbox(key="register_model").set_value(name).run()
    assert description(at).value == "" and alias(at).value == "none"
    at = at.button(key="register_button").click().run()
    assert_no_traceback(at)
    assert f"as {name} v2." in success(at)
    assert client.get_model_version(name, "1").description == "cnn, 2 epochs, the first"
    assert not client.get_model_version(name, "2").description  # nothing carried over
    assert client.get_registered_model(name).aliases == {"challenger": 1}
    at = at.selectbox(key="register_run").set_value(trained_runs[0]).run()
    assert description(at).value == ""  # nor back to the first run
