"""Which model a URI means: models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH pinned
to one registered version (or run), with errors that say what does exist instead.

An alias is resolved once, here, so a loaded model keeps answering as the version it was loaded as
even when the alias moves later.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipeline.errors import UserError

URI_FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model"


class ModelError(UserError):
    """A model that cannot be used for predictions; the message says why and what exists."""


class ModelNotFoundError(ModelError):
    """The model, version, alias or run does not exist (or no longer does)."""


@dataclass(frozen=True)
class ModelRef:
    uri: str          # as asked
    load_uri: str     # pinned: models:/NAME/VERSION or runs:/RUN_ID/PATH
    run_id: str
    name: str = ""    # registered model name, version and the alias it was asked by
    version: str = ""
    alias: str = ""
    variant: str = ""  # an exported variant (onnx, int8) and its source model URI
    source: str = ""

    @property
    def label(self) -> str:
        """How people name it: `digits-cnn v2 @champion`, `digits-cnn v2 · int8`, or the run's model."""
        if not self.name:
            if self.variant and (m := re.fullmatch(r"models:/([^/@]+)/(\d+)", self.source)):
                return f"{m[1]} v{m[2]} · {self.variant}"
            return f"run {self.run_id[:8]} model" + (f" · {self.variant}" if self.variant else "")
        return (f"{self.name} v{self.version}" + (f" @{self.alias}" if self.alias else "")
                + (f" · {self.variant}" if self.variant else ""))


def missing(e: MlflowException) -> bool:
    return e.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _versions(client: MlflowClient, name: str) -> list[str]:
    found = client.search_model_versions(f"name = '{name}'")
    return sorted((str(v.version) for v in found), key=int)


def _registered(client: MlflowClient, name: str):
    try:
        return client.get_registered_model(name)
    except MlflowException as e:
        if missing(e):
            raise ModelNotFoundError(f"no registered model named {name!r}") from None
        raise


def _model_version(client: MlflowClient, name: str, version: str, alias: str = ""):
    try:
        return client.get_model_version(name, version)
    except MlflowException as e:
        if not missing(e):
            raise
    _registered(client, name)
    known = ", ".join(_versions(client, name)) or "none"
    gone = f"alias @{alias} points to version {version}, which" if alias else f"version {version}"
    raise ModelNotFoundError(f"model {name!r}: {gone} does not exist (deleted?); versions: {known}")


def resolve(client: MlflowClient, uri: str) -> ModelRef:
    """Pin `uri` to one model version or run, with a clear error when any part does not exist."""
    uri = uri.strip()
    if m := re.fullmatch(r"models:/([^/@]+)@([^/@]+)", uri):
        name, alias = m.groups()
        model = _registered(client, name)
        if alias not in model.aliases:
            known = ", ".join(f"@{a} (v{v})" for a, v in sorted(model.aliases.items())) or "none"
            raise ModelNotFoundError(f"model {name!r} has no alias @{alias}; aliases: {known}")
        version = _model_version(client, name, str(model.aliases[alias]), alias)
        return _pinned(uri, version, alias)
    if m := re.fullmatch(r"models:/([^/@]+)/([^/@]+)", uri):
        name, version = m.groups()
        if version == "latest":
            version = (_versions(client, name) or [""])[-1]
            if not version:
                _registered(client, name)
                raise ModelNotFoundError(f"model {name!r} has no versions yet")
        elif not version.isdigit():
            raise ModelError(f"{uri}: the version must be a number or 'latest' (or use {name}@ALIAS)")
        return _pinned(uri, _model_version(client, name, version))
    if m := re.fullmatch(r"runs:/([0-9a-zA-Z]+)/(.+)", uri):
        run_id, path = m.groups()
        try:
            run = client.get_run(run_id)
        except MlflowException as e:
            if missing(e):
                raise ModelNotFoundError(f"no run with id {run_id}") from None
            raise
        if run.info.lifecycle_stage == "deleted":
            raise ModelNotFoundError(f"run {run_id} is deleted")
        return ModelRef(uri, f"runs:/{run_id}/{path.strip('/')}", run_id)
    raise ModelError(f"cannot read model URI {uri!r}; use {URI_FORMS}")


def _pinned(uri: str, version, alias: str = "") -> ModelRef:
    if version.status != "READY":
        raise ModelError(f"model {version.name!r} version {version.version} is {version.status}, not READY")
    return ModelRef(uri, f"models:/{version.name}/{version.version}", version.run_id or "",
                    version.name, str(version.version), alias)
