"""What an audit is before it runs, without torch: its refusals, params and tags (the queue and pages use it).

runs/audit.py does the work; queue/jobs.submit_audit queues it.
"""
from __future__ import annotations

from pipeline import names
from pipeline.config import IMAGEFOLDER, RunConfig
from pipeline.errors import UserError
from pipeline.imaging import folders

MIN_FOLDS, MAX_FOLDS = 2, 20


class AuditError(UserError):
    """An audit that cannot run on this folder or with these options; the message says which and why."""


def check(config: RunConfig, folds: int, found: folders.FolderScan | None = None) -> None:
    """Refuse before anything is written: not a folder, K out of range, or a class with fewer than K images."""
    if not config.is_imagefolder:
        raise AuditError(f"an audit needs imagefolder:PATH, got {config.dataset!r}")
    if not MIN_FOLDS <= folds <= MAX_FOLDS:
        raise AuditError(f"--folds must be from {MIN_FOLDS} to {MAX_FOLDS}, got {folds}")
    found = found or folders.scan(config.imagefolder_path())
    small = {c: n for c, n in found.counts.items() if n < folds}
    if small:
        named = ", ".join(f"{c} ({n})" for c, n in sorted(small.items()))
        raise AuditError(f"image folder {config.dataset[len(IMAGEFOLDER):]}: {folds}-fold cross-validation needs "
                         f"at least {folds} images in every class; too few in {named}")


def params(config: RunConfig, folds: int) -> dict[str, str]:
    return {**config.to_params(), names.PARAM_FOLDS: str(folds)}


def tags(config: RunConfig) -> dict[str, str]:
    return {names.TAG_KIND: names.KIND_AUDIT, names.TAG_AUDIT_FOLDER: config.dataset[len(IMAGEFOLDER):]}
