"""The registry through MLflow's API: listing, registering runs, aliases, descriptions.

Each change is checked with a plain MlflowClient too: what `mlflow ui` would show.
Run: .venv/bin/python -m pytest tests/test_registry.py -q
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from mlflow import MlflowClient

from pipeline import names
from pipeline.serving import registry
from pipeline.serving.registry import ModelVersionInfo


@pytest.fixture(scope="module")
def two_versions(trained_runs) -> str:
    """Model `registry-tests` with the cnn run as v1 and the mlp run as v2."""
    name = "registry-tests"
    registry.register_run(trained_runs[0], name, "the first cnn")
    registry.register_run(trained_runs[2], name)
    return name


def test_the_fixture_model_is_listed_with_its_runs_scores(trained_run):
    [v1] = [v for v in registry.list_versions() if v.name == "digits-cnn"]
    run = MlflowClient().get_run(trained_run)
    assert (v1.version, v1.run_id, v1.status, v1.run_status) == (1, trained_run, "READY", "FINISHED")
    assert v1.test_accuracy == run.data.metrics[names.TEST_ACCURACY]
    assert v1.test_f1 == run.data.metrics[names.TEST_F1]
    assert (v1.dataset, v1.architecture, v1.run_name) == ("digits", "cnn", "tiny-cnn")
    assert abs(v1.created - datetime.now(timezone.utc)) < timedelta(hours=1)
    assert v1.uri == "models:/digits-cnn/1"


def test_register_a_finished_run_as_new_versions(two_versions, trained_runs):
    mine = [v for v in registry.list_versions() if v.name == two_versions]
    assert [v.version for v in mine] == [2, 1]  # newest first
    assert [v.architecture for v in mine] == ["mlp", "cnn"]
    assert mine[1].description == "the first cnn"
    seen = MlflowClient().get_model_version(two_versions, "1")
    assert seen.run_id == trained_runs[0] and seen.description == "the first cnn"
    assert seen.source.startswith("models:/m-")  # the run's logged model, as `--register` makes it


def test_register_refuses_what_cannot_be_registered(two_versions, trained_runs, store):
    client = MlflowClient()
    running = client.create_run(client.get_experiment_by_name("tests").experiment_id).info.run_id
    cases = [(trained_runs[0], two_versions, "already version 1"), ("0" * 32, "x", "no run with id"),
             (running, "x", "RUNNING; only finished runs"), (trained_runs[0], "  ", "give the registered model a name")]
    for run_id, name, message in cases:
        with pytest.raises(registry.RegistryError, match=message):
            registry.register_run(run_id, name)
    client.set_terminated(running)  # FINISHED, but it never logged a model
    with pytest.raises(registry.RegistryError, match="no logged model named 'model'"):
        registry.register_run(running, "x")
    client.delete_run(running)
    with pytest.raises(registry.RegistryError, match="is deleted"):
        registry.register_run(running, "x")


def test_set_move_and_delete_aliases(two_versions):
    client = MlflowClient()
    assert registry.set_alias(two_versions, "champion", 1) is None
    assert registry.set_alias(two_versions, "challenger", "2") is None
    assert client.get_registered_model(two_versions).aliases == {"champion": 1, "challenger": 2}
    assert registry.set_alias(two_versions, "champion", 2) == "1"  # moved: returns where it was
    assert registry.set_alias(two_versions, "champion", 2) is None  # already there: nothing moved
    assert str(client.get_model_version_by_alias(two_versions, "champion").version) == "2"
    listed = {v.version: v.aliases for v in registry.list_versions() if v.name == two_versions}
    assert listed == {2: ("challenger", "champion"), 1: ()}
    registry.delete_alias(two_versions, "challenger")
    assert client.get_registered_model(two_versions).aliases == {"champion": 2}


@pytest.mark.parametrize("name, alias, version, message", [
    ("registry-tests", "latest", 1, "reserved"),
    ("registry-tests", "v7", 1, "reserved"),
    ("registry-tests", "has space", 1, "alphanumerics"),
    ("registry-tests", " ", 1, "give the alias a name"),
    ("registry-tests", "champion", 42, "has no version 42"),
    ("no-such-model", "champion", 1, "no registered model named 'no-such-model'"),
])
def test_bad_aliases_are_explained(two_versions, name, alias, version, message):
    with pytest.raises(registry.RegistryError, match=message):
        registry.set_alias(name, alias, version)


def test_delete_an_alias_that_is_not_there(two_versions):
    with pytest.raises(registry.RegistryError, match="has no alias 'nobody'"):
        registry.delete_alias(two_versions, "nobody")


def test_descriptions_of_models_and_versions(two_versions):
    registry.set_description(two_versions, "  Digits, for the registry tests  ")
    registry.set_description(two_versions, "mlp baseline", version=2)
    client = MlflowClient()
    assert client.get_registered_model(two_versions).description == "Digits, for the registry tests"
    assert client.get_model_version(two_versions, "2").description == "mlp baseline"
    v2 = next(v for v in registry.list_versions() if v.name == two_versions and v.version == 2)
    assert (v2.model_description, v2.description) == ("Digits, for the registry tests", "mlp baseline")
    with pytest.raises(registry.RegistryError, match="has no version 9"):
        registry.set_description(two_versions, "x", version=9)
    with pytest.raises(registry.RegistryError, match="no registered model"):
        registry.set_description("no-such-model", "x")


def _version(name: str, version: int, minutes: int, aliases=(), status="READY") -> ModelVersionInfo:
    created = datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes)
    return ModelVersionInfo(name, version, tuple(aliases), "", "", created, status, "run")


def test_default_choice_prefers_the_newest_champion_then_the_newest_version():
    assert registry.default_choice([]) is None
    plain = [_version("a", 1, 0), _version("b", 1, 5), _version("b", 2, 9, status="FAILED_REGISTRATION")]
    assert registry.default_choice(plain) == ("b", "1")
    champions = plain + [_version("a", 2, 3, ["champion"]), _version("c", 1, 4, ["champion", "x"])]
    assert registry.default_choice(champions) == ("c", "champion")
