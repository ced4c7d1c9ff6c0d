"""A run's dataset in MLflow: `mlflow.log_input` (MLflow's own dataset panel shows it) plus tags for lists.

The digest and profile come from the trainer's read of the data (training/data.py, imaging/lineage.py);
this module only records them.
"""
from __future__ import annotations

import json

import mlflow
from mlflow import MlflowClient
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.http_dataset_source import HTTPDatasetSource

from pipeline import names
from pipeline.runs import lifecycle


class ProfiledDataset(MetaDataset):
    """MLflow's MetaDataset (name, source, digest) with our profile: classes, files per class, sizes."""

    def __init__(self, source, name: str, digest: str, profile: dict):
        self._profile = profile
        super().__init__(source=source, name=name, digest=digest)

    @property
    def profile(self) -> dict:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


class FolderSource(HTTPDatasetSource):
    """The folder relative to the data root (MLflow needs a source; nothing is loaded from it)."""

    @staticmethod
    def _get_source_type() -> str:
        return "runboard_folder"


def log_dataset(client: MlflowClient, run_id: str, seen) -> None:
    """Record `seen` (a training.data.Lineage) on the active run `run_id`, and the exclusion list."""
    dataset = ProfiledDataset(FolderSource(seen.source), seen.name, seen.digest, seen.profile)
    mlflow.log_input(dataset, context=names.DATASET_CONTEXT)
    tags = {names.TAG_DATASET_NAME: seen.name, names.TAG_DATASET_SOURCE: seen.source,
            names.TAG_DATASET_DIGEST: seen.digest, names.TAG_DATASET_FILES: seen.profile.get("files", 0)}
    if seen.excluded:
        tags[names.TAG_EXCLUDED] = len(seen.excluded)
        tags[names.TAG_EXCLUDED_REASON] = (seen.excluded_reason or "listed by hand")[:lifecycle.REASON_CHARS]
        client.log_text(run_id, "\n".join(seen.excluded) + "\n", names.EXCLUDED_FILES_TXT)
    lifecycle.set_tags(client, run_id, tags)
