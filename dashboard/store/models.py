"""The model registry's listing (cached briefly) and loaded models (cached per version)."""
from __future__ import annotations

import streamlit as st
from mlflow.exceptions import MlflowException

from dashboard import refresh
from dashboard.store.connection import cache_key, client, store_failed
from pipeline import settings


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _model_versions(uri: str) -> list:
    from pipeline.serving import registry

    try:
        return registry.list_versions(client())
    except MlflowException as e:
        raise store_failed(e, "the model registry") from None


def model_versions(named: str | None = None, ref: str | None = None) -> list:
    """Every registered model version (pipeline.serving.registry.ModelVersionInfo), by name, newest first.

    `named` and `ref`: a model and version or alias a link asks for. A listing cached before they were registered
    is read again rather than telling the person they do not exist.
    """
    found = _model_versions(cache_key())
    if named and not _offers(found, named, ref):
        _model_versions.clear(cache_key())
        found = _model_versions(cache_key())
    return found


def _offers(versions: list, name: str, ref: str | None) -> bool:
    from dashboard import model_choice

    options = model_choice.ref_options(versions, name)
    return bool(options) and (not ref or model_choice.normal_ref(ref) in options)


def forget_model_versions() -> None:
    """Drop the cached listing after a registry change (or a vanished version) so the next read sees it."""
    _model_versions.clear()
    _model_tags.clear()


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _model_tags(uri: str, name: str, version: int | None) -> dict[str, str]:
    from pipeline.serving import registry

    try:
        return registry.tags_of(name, version, client())
    except MlflowException as e:
        raise store_failed(e, f"the tags of {name}") from None


def model_tags(name: str, version: int | None = None) -> dict[str, str]:
    """The tags of a registered model, or of one of its versions (RegistryError when it is gone)."""
    return _model_tags(cache_key(), name, version)


@st.cache_resource(max_entries=refresh.MODELS_KEPT, show_spinner=False)
def _predictor(uri: str, name: str, version: int, created: str):
    import torch

    from pipeline.serving import predict

    torch.set_num_threads(settings.predict_threads())  # this process only predicts; see settings
    return predict.load(f"models:/{name}/{version}", client())


def predictor(version):
    """The loaded model (pipeline.serving.predict.Predictor) of a registered version, cached per version.

    Keyed by name, version and creation time, so a model deleted and registered anew is reloaded.
    Raises pipeline.serving.predict.ModelError when the version is gone or cannot be loaded.
    """
    return _predictor(cache_key(), version.name, int(version.version), version.created.isoformat())


@st.cache_resource(max_entries=refresh.MODELS_KEPT, show_spinner=False)
def _explainer(uri: str, model_uri: str, identity: int, _predictor):
    from pipeline.serving import explain

    return explain.for_predictor(_predictor)


def explainer(predictor):
    """The explainer (pipeline.serving.explain.Explainer) of a loaded model, cached beside it.

    Raises pipeline.serving.predict.ModelError when the model cannot be rebuilt to be explained.
    """
    return _explainer(cache_key(), predictor.ref.load_uri, id(predictor), predictor)


@st.cache_data(ttl=refresh.LISTING_TTL, show_spinner=False)
def _variants(uri: str, source: str) -> list[dict]:
    from pipeline.serving import export

    try:
        return export.variants_of(client(), source)
    except MlflowException as e:
        raise store_failed(e, "the exported variants") from None


def model_variants(version) -> list[dict]:
    """The exported variants of a registered version, original first (see pipeline.serving.export.variants_of);
    empty when it was never exported."""
    return _variants(cache_key(), version.uri)


def forget_model_variants() -> None:
    """Drop the cached variants after an export so the next read shows the new runs."""
    _variants.clear()


@st.cache_resource(max_entries=refresh.MODELS_KEPT, show_spinner=False)
def _variant_predictor(uri: str, run_id: str):
    from pipeline import names
    from pipeline.serving import predict

    return predict.load(f"runs:/{run_id}/{names.MODEL_NAME}", client())


def variant_predictor(run_id: str):
    """An exported variant (its run's ONNX model) loaded in onnxruntime, cached per run; raises ModelError."""
    return _variant_predictor(cache_key(), run_id)


@st.cache_data(ttl=refresh.QUEUE_TTL, show_spinner=False)
def _prune_jobs(uri: str, source: str) -> list[dict]:
    from pipeline import names
    from pipeline.queue import jobs

    try:
        runs = [r for r in jobs.unfinished(client(), names.EXPORT_EXPERIMENT)
                if r.data.tags.get(names.TAG_EXPORT_SOURCE) == source]
    except MlflowException as e:
        raise store_failed(e, "the queued prune jobs") from None
    return [{"run_id": r.info.run_id, "variant": r.data.tags.get(names.TAG_VARIANT, ""), "status": r.info.status,
             "queued": float(r.data.tags.get(names.TAG_QUEUED) or 0)} for r in runs]


def prune_jobs(version) -> list[dict]:
    """The queued and running prune jobs of a registered version (run_id, variant, status, queued), briefly cached."""
    return _prune_jobs(cache_key(), version.uri)


def forget_prune_jobs() -> None:
    _prune_jobs.clear()
