"""Lineage in words: what a run trained on, what it left out, and whether chosen runs saw the same data.

Pure functions of a run's tags (names.TAG_DATASET_*), so every page words it the same way.
"""
from __future__ import annotations

import pandas as pd

from dashboard import formatting
from pipeline import names
from pipeline.imaging.lineage import short


def trained_on(tags: dict) -> str | None:
    """'trained on mnist-real/train · digest 3f2a91 · 1,000 files', or None for a run without lineage."""
    digest = tags.get(names.TAG_DATASET_DIGEST)
    if not isinstance(digest, str) or not digest:
        return None
    files = formatting.count(tags.get(names.TAG_DATASET_FILES))
    return f"trained on {tags.get(names.TAG_DATASET_SOURCE, '?')} · digest {short(digest)} · {files} files"


def left_out(tags: dict) -> str | None:
    """'3 files left out on purpose: label issues from audit ...', or None."""
    count = tags.get(names.TAG_EXCLUDED)
    if not isinstance(count, str) or not count:
        return None
    return f"{formatting.count(count)} files left out on purpose ({names.EXCLUDED_FILES_TXT}): " \
           f"{tags.get(names.TAG_EXCLUDED_REASON) or 'no reason given'}"


def digest_conflicts(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Dataset name -> its different short digests, for names the chosen runs trained on in more than one version."""
    name, digest = f"tags.{names.TAG_DATASET_NAME}", f"tags.{names.TAG_DATASET_DIGEST}"
    if name not in runs or digest not in runs:
        return {}
    seen = runs[[name, digest]].dropna()
    return {n: sorted(short(d) for d in group[digest].unique())
            for n, group in seen.groupby(name) if group[digest].nunique() > 1}


def conflict_warning(conflicts: dict[str, list[str]]) -> str | None:
    if not conflicts:
        return None
    parts = "; ".join(f"{n} (digests {', '.join(d)})" for n, d in conflicts.items())
    return f"These runs trained on different contents of the same dataset: {parts}. The folder changed between " \
           "these runs, so their scores are not measured on the same images."
