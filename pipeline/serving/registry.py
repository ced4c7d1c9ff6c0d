"""The model registry, through MLflow's registry API so that `mlflow ui` shows the same thing.

List registered models with their versions, aliases and source runs' scores; register a finished
run's model as a new version; set, move and delete aliases; describe models and versions.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from mlflow import MlflowClient
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from pipeline import names
from pipeline.errors import UserError
from pipeline.runs import tracking

CHAMPION, CHALLENGER = "champion", "challenger"  # the aliases people use most; any valid name works
IN_CHUNK = 100  # run ids per `run_id IN (...)` query


class RegistryError(UserError):
    """A registry change that cannot be made; the message says why."""


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: int
    aliases: tuple[str, ...]
    description: str            # this version's
    model_description: str      # the registered model's
    created: datetime           # UTC
    status: str                 # READY, PENDING_REGISTRATION, FAILED_REGISTRATION
    run_id: str
    run_name: str = ""
    run_status: str = ""        # FINISHED, ...; "deleted" or "missing" when the run is gone
    experiment_id: str = ""
    dataset: str = ""
    architecture: str = ""
    test_accuracy: float | None = None
    test_f1: float | None = None
    dataset_digest: str = ""    # what the source run trained on (names.TAG_DATASET_DIGEST); "" before lineage

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _client(client: MlflowClient | None) -> MlflowClient:
    return client or tracking.connect()


def _all(search, **kwargs) -> list:
    """Every page of an MLflow search."""
    out, token = [], None
    while True:
        page = search(page_token=token, **kwargs)
        out += list(page)
        token = page.token
        if not token:
            return out


def _runs(client: MlflowClient, run_ids: set[str]) -> dict:
    """Source runs by id, deleted ones included, in one query per IN_CHUNK ids."""
    ids = sorted(i for i in run_ids if i)
    if not ids:
        return {}
    experiments = [e.experiment_id for e in _all(client.search_experiments, view_type=ViewType.ALL)]
    found = {}
    for i in range(0, len(ids), IN_CHUNK):
        chunk = ", ".join(f"'{r}'" for r in ids[i:i + IN_CHUNK])
        for run in client.search_runs(experiments, f"attributes.run_id IN ({chunk})",
                                      run_view_type=ViewType.ALL, max_results=IN_CHUNK):
            found[run.info.run_id] = run
    return found


def list_versions(client: MlflowClient | None = None) -> list[ModelVersionInfo]:
    """Every version of every registered model, by model name then newest version first."""
    client = _client(client)
    models = {m.name: m for m in _all(client.search_registered_models, max_results=100)}
    versions = _all(client.search_model_versions, max_results=1000)
    runs = _runs(client, {v.run_id for v in versions})
    out = []
    for v in versions:
        model = models.get(v.name)
        aliases = tuple(sorted(a for a, n in (model.aliases if model else {}).items() if str(n) == str(v.version)))
        run = runs.get(v.run_id)
        metrics, params = (run.data.metrics, run.data.params) if run else ({}, {})
        run_status = ("deleted" if run.info.lifecycle_stage == "deleted" else run.info.status) if run else "missing"
        out.append(ModelVersionInfo(
            name=v.name, version=int(v.version), aliases=aliases, description=v.description or "",
            model_description=(model.description or "") if model else "",
            created=datetime.fromtimestamp(v.creation_timestamp / 1000, timezone.utc),
            status=v.status, run_id=v.run_id or "", run_name=run.info.run_name if run else "",
            run_status=run_status, experiment_id=run.info.experiment_id if run else "",
            dataset=params.get("dataset", ""), architecture=params.get("model", ""),
            test_accuracy=metrics.get(names.TEST_ACCURACY), test_f1=metrics.get(names.TEST_F1),
            dataset_digest=run.data.tags.get(names.TAG_DATASET_DIGEST, "") if run else ""))
    return sorted(out, key=lambda i: (i.name.lower(), -i.version))


def default_choice(versions: list[ModelVersionInfo], alias: str = CHAMPION) -> tuple[str, str] | None:
    """(name, reference) to show first: the newest version holding `alias`, else the newest version."""
    ready = [v for v in versions if v.status == "READY"]
    holders = [v for v in ready if alias in v.aliases]
    if holders:
        newest = max(holders, key=lambda v: v.created)
        return newest.name, alias
    if ready:
        newest = max(ready, key=lambda v: (v.created, v.version))
        return newest.name, str(newest.version)
    return None


def _model_of_run(client: MlflowClient, run_id: str) -> str:
    """The id of the logged model `model` of a finished run, or a RegistryError saying what is wrong."""
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RegistryError(f"no run with id {run_id}") from None
    if run.info.lifecycle_stage == "deleted":
        raise RegistryError(f"run {run_id} is deleted; restore it before registering its model")
    if run.info.status != "FINISHED":
        raise RegistryError(f"run {run_id} is {run.info.status}; only finished runs can be registered")
    outputs = run.outputs.model_outputs if run.outputs else []
    for output in sorted(outputs, key=lambda o: -o.step):
        if client.get_logged_model(output.model_id).name == names.MODEL_NAME:
            return output.model_id
    raise RegistryError(f"run {run_id} has no logged model named {names.MODEL_NAME!r}")


def register_run(run_id: str, name: str, description: str = "",
                 client: MlflowClient | None = None) -> ModelVersionInfo:
    """Register finished run `run_id`'s model (runs:/ID/model) as a new version of `name`."""
    client, name = _client(client), name.strip()
    if not name:
        raise RegistryError("give the registered model a name, e.g. digits-cnn")
    model_id = _model_of_run(client, run_id)
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise RegistryError(f"cannot register a model named {name!r}: {_reason(e)}") from None
    same = [v for v in client.search_model_versions(f"name = '{name}' AND run_id = '{run_id}'")]
    if same:
        raise RegistryError(f"run {run_id} is already version {same[0].version} of {name!r}")
    version = client.create_model_version(name, source=f"models:/{model_id}", run_id=run_id,
                                          model_id=model_id, description=description.strip() or None)
    return next(v for v in list_versions(client) if v.name == name and v.version == int(version.version))


def _reason(e: MlflowException) -> str:
    return str(e.message if hasattr(e, "message") else e).splitlines()[0]


def _check_version(client: MlflowClient, name: str, version: int | str) -> None:
    try:
        client.get_model_version(name, str(version))
    except MlflowException:
        try:
            client.get_registered_model(name)
        except MlflowException:
            raise RegistryError(f"no registered model named {name!r}") from None
        raise RegistryError(f"model {name!r} has no version {version} (deleted?)") from None


def set_alias(name: str, alias: str, version: int | str, client: MlflowClient | None = None) -> str | None:
    """Point `alias` at `version`, moving it from the version that held it; returns that version."""
    client, alias = _client(client), alias.strip()
    if not alias:
        raise RegistryError("give the alias a name, e.g. champion or challenger")
    _check_version(client, name, version)
    previous = client.get_registered_model(name).aliases.get(alias)
    try:
        client.set_registered_model_alias(name, alias, str(version))
    except MlflowException as e:
        raise RegistryError(f"alias {alias!r}: {_reason(e)}") from None
    return str(previous) if previous is not None and str(previous) != str(version) else None


def delete_alias(name: str, alias: str, client: MlflowClient | None = None) -> None:
    """Remove `alias` from model `name` (the version itself stays)."""
    client = _client(client)
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException:
        raise RegistryError(f"no registered model named {name!r}") from None
    if alias not in aliases:
        raise RegistryError(f"model {name!r} has no alias {alias!r}")
    client.delete_registered_model_alias(name, alias)


def set_description(name: str, description: str, version: int | str | None = None,
                    client: MlflowClient | None = None) -> None:
    """Describe the registered model `name`, or one of its versions when `version` is given."""
    client = _client(client)
    if version is None:
        try:
            client.update_registered_model(name, description=description.strip())
        except MlflowException:
            raise RegistryError(f"no registered model named {name!r}") from None
    else:
        _check_version(client, name, version)
        client.update_model_version(name, str(version), description=description.strip())


# --- tags and deletion (the Registry page's everyday edits) --------------------------------------

def _check_model(client: MlflowClient, name: str):
    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise RegistryError(f"no registered model named {name!r}") from None


def tags_of(name: str, version: int | str | None = None, client: MlflowClient | None = None) -> dict[str, str]:
    """The tags of model `name`, or of one of its versions."""
    client = _client(client)
    if version is None:
        return dict(_check_model(client, name).tags)
    _check_version(client, name, version)
    return dict(client.get_model_version(name, str(version)).tags)


def set_tag(name: str, key: str, value: str, version: int | str | None = None,
            client: MlflowClient | None = None) -> str:
    """Tag model `name` (or one of its versions), e.g. reviewed_by=ana; MLflow's refusal is said as it says it."""
    client, key = _client(client), key.strip()
    if not key:
        raise RegistryError("a tag needs a key, e.g. reviewed_by or dataset")
    if version is None:
        _check_model(client, name)
    else:
        _check_version(client, name, version)
    try:
        if version is None:
            client.set_registered_model_tag(name, key, value)
        else:
            client.set_model_version_tag(name, str(version), key, value)
    except MlflowException as e:
        raise RegistryError(f"tag {key!r} was refused by MLflow: {_reason(e)}") from None
    return key


def delete_tag(name: str, key: str, version: int | str | None = None, client: MlflowClient | None = None) -> None:
    client = _client(client)
    if key not in tags_of(name, version, client):
        raise RegistryError(f"{name}{f' v{version}' if version is not None else ''} has no tag {key!r}")
    if version is None:
        client.delete_registered_model_tag(name, key)
    else:
        client.delete_model_version_tag(name, str(version), key)


def aliases_on(name: str, version: int | str, client: MlflowClient | None = None) -> list[str]:
    """The aliases of model `name` that point to `version`."""
    aliases = _check_model(_client(client), name).aliases
    return sorted(a for a, v in aliases.items() if str(v) == str(version))


def delete_version(name: str, version: int | str, move_aliases_to: int | str | None = None,
                   client: MlflowClient | None = None) -> list[str]:
    """Delete one version. Its aliases first move to `move_aliases_to`, or go with it when that is None;
    returns them. Everything is checked before anything changes."""
    client = _client(client)
    _check_version(client, name, version)
    aliases = aliases_on(name, version, client)
    if move_aliases_to is not None:
        if str(move_aliases_to) == str(version):
            raise RegistryError(f"the aliases of v{version} cannot move to the version being deleted")
        _check_version(client, name, move_aliases_to)
    for alias in aliases:
        if move_aliases_to is not None:
            client.set_registered_model_alias(name, alias, str(move_aliases_to))
        else:
            client.delete_registered_model_alias(name, alias)
    client.delete_model_version(name, str(version))
    return aliases


def delete_model(name: str, aliases_confirmed: bool = False, client: MlflowClient | None = None) -> None:
    """Delete a registered model with all its versions: only once no alias points into it, or when the person
    confirmed after seeing them named (whatever loads models:/NAME@ALIAS then fails)."""
    client = _client(client)
    aliases = _check_model(client, name).aliases
    if aliases and not aliases_confirmed:
        held = ", ".join(f"@{a} → v{v}" for a, v in sorted(aliases.items()))
        raise RegistryError(f"model {name!r} still has aliases ({held}): whatever loads them would fail. "
                            "Remove them first, or confirm")
    client.delete_registered_model(name)
