"""Finding runs by what people write on them: the note, their own tags, the name. Plain pandas, no Streamlit.

The Runs page's search box and tag filter call these on the cached listing (tags come with search_runs),
so a search costs no query to MLflow. Runboard's and MLflow's own tags are not offered as filters: the
MLflow filter box reaches them (tags.`runboard.device` = 'cpu').
"""
from __future__ import annotations

import pandas as pd

from pipeline import names

NOTE_CHARS = 60  # a note's first line, shortened to this, in the Runs table
RESERVED = ("runboard.", "mlflow.")  # Runboard's and MLflow's own tags: shown apart, not edited by hand
NOTE_COLUMN = f"tags.{names.TAG_NOTE}"


def short_note(note) -> str | None:
    """A note as the Runs table shows it: its first non-empty line, cut to NOTE_CHARS."""
    if not isinstance(note, str) or not note.strip():
        return None
    line = next(part.strip() for part in note.strip().splitlines() if part.strip())
    return line if len(line) <= NOTE_CHARS else line[:NOTE_CHARS - 1].rstrip() + "…"


def own_tag_columns(runs: pd.DataFrame) -> list[str]:
    """The tags.* columns of the person's own tags."""
    return [c for c in runs.columns if c.startswith("tags.") and not c.removeprefix("tags.").startswith(RESERVED)]


def tag_options(runs: pd.DataFrame) -> list[str]:
    """Every "key=value" of the person's own tags among `runs`, sorted: the tag filter's choices."""
    found = set()
    for column in own_tag_columns(runs):
        found |= {f"{column.removeprefix('tags.')}={value}" for value in runs[column].dropna().unique()}
    return sorted(found)


def with_tags(runs: pd.DataFrame, chosen: list[str]) -> pd.DataFrame:
    """The runs that carry every chosen "key=value"."""
    for choice in chosen:
        key, _, value = choice.partition("=")
        column = f"tags.{key}"
        runs = runs[runs[column].eq(value)] if column in runs else runs.iloc[0:0]
    return runs


def search(runs: pd.DataFrame, text: str) -> pd.DataFrame:
    """The runs whose name, note, or own tag (key or value) holds `text`, whatever the case."""
    text = text.strip().lower()
    if not text:
        return runs
    haystack = runs["run_name"].fillna("").astype(str)
    for column in [NOTE_COLUMN, *own_tag_columns(runs)]:
        if column in runs:
            key = column.removeprefix("tags.") + "=" if column != NOTE_COLUMN else ""
            haystack = haystack + "\n" + runs[column].map(lambda v, k=key: f"{k}{v}" if isinstance(v, str) else "")
    return runs[haystack.str.lower().str.contains(text, regex=False)]
