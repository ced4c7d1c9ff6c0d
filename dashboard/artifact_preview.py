"""Artifact previews on the run page: what people open, shown in place; the rest is a size and a download.

Text and logs show their tail (with "show all"), JSON and YAML pretty, CSV as a table, images inline,
the model's MLmodel file as text. Checkpoints, .npz, .onnx and anything unknown are binary: no preview.
"""
from __future__ import annotations

import functools
import io
import json
from pathlib import PurePosixPath

import pandas as pd
import streamlit as st
import yaml

from dashboard import formatting, store
from pipeline import names

TEXT, JSON, YAML, CSV, IMAGE, BINARY = "text", "json", "yaml", "csv", "image", "binary"
TEXT_SUFFIXES = {".txt", ".log", ".md", ".py", ".out", ".err", ".cfg", ".ini", ".toml"}
TEXT_NAMES = {"MLmodel", "requirements.txt", "python_env.yaml", "conda.yaml"}  # the model's own files, as text
TAIL_LINES = 200         # a text file's last lines shown until "show all"
PREVIEW_MAX_BYTES = 20_000_000  # larger files are only downloaded: a preview must not stall the page
CSV_ROWS = 1000          # rows of a CSV shown


def kind(path: str) -> str:
    """How a file is previewed, from its name."""
    name = PurePosixPath(path).name
    suffix = PurePosixPath(path).suffix.lower()
    if name in TEXT_NAMES or suffix in TEXT_SUFFIXES:
        return TEXT
    if suffix == ".json":
        return JSON
    if suffix in (".yaml", ".yml"):
        return YAML
    if suffix == ".csv":
        return CSV
    if suffix in names.IMAGE_SUFFIXES:
        return IMAGE
    return BINARY


def previewable(path: str, size) -> bool:
    return kind(path) != BINARY and (size is None or size != size or size <= PREVIEW_MAX_BYTES)


def tail(text: str, lines: int = TAIL_LINES) -> tuple[str, int]:
    """The last `lines` lines of `text`, and how many lines were left out before them."""
    parts = text.splitlines()
    return "\n".join(parts[-lines:]), max(0, len(parts) - lines)


def show(data: bytes, path: str, key: str) -> None:
    """The preview of one file's bytes, by its kind; a file that does not parse is shown as text, said so."""
    what = kind(path)
    text = data.decode("utf-8", errors="replace") if what != IMAGE else ""
    try:
        if what == JSON:
            st.json(json.loads(text), expanded=2)
        elif what == YAML:
            st.code(yaml.safe_dump(yaml.safe_load(text), sort_keys=False), language="yaml")
        elif what == CSV:
            frame = pd.read_csv(io.StringIO(text), nrows=CSV_ROWS)
            st.dataframe(frame, key=f"{key}-csv", hide_index=True, placeholder=formatting.MISSING)
            st.caption(f"the first {CSV_ROWS:,} rows" if len(frame) == CSV_ROWS else f"{len(frame):,} rows")
        elif what == IMAGE:
            st.image(data, caption=path)
        else:
            whole = st.toggle("Show all", key=f"{key}-all") if len(text.splitlines()) > TAIL_LINES else True
            shown, left_out = (text, 0) if whole else tail(text)
            if left_out:
                st.caption(f"the last {TAIL_LINES} lines ({left_out:,} lines above them)")
            st.code(shown, language=None)
    except (ValueError, yaml.YAMLError) as e:
        st.warning(f"{path} does not parse as {what} ({str(e).splitlines()[0]}): shown as text.")
        st.code(text[-100_000:], language=None)


# --- the run page's Artifacts tab ----------------------------------------------------------------------

def _file_rows(files, fetch, key: str) -> None:
    """One line per file: its path, its size as people read it, and a download button."""
    for i, row in enumerate(files):
        name, button = st.columns([4, 1])
        name.markdown(f"`{row['path']}` · {formatting.size(row['size'])}"
                      + ("" if previewable(row["path"], row["size"]) else " · binary, download only"))
        button.download_button("Download", functools.partial(fetch, row["path"]), file_name=row["path"].rsplit("/", 1)[-1],
                               key=f"{key}_{i}", on_click="ignore", icon=":material/download:")


def tab(run: dict) -> None:
    """The run's files and its logged model's, each with a download; a preview of the one picked."""
    run_id, version = run["run_id"], run["last_update"]
    files = store.artifacts(run_id, version).to_dict("records")
    try:
        model = store.model_info(run_id, version)
    except store.ArtifactNotFoundError as e:
        model, no_model = None, e
    fetchers = {row["path"]: functools.partial(store.artifact_bytes, run_id, row["path"], version) for row in files}
    if model:
        fetchers |= {f"{names.MODEL_NAME}/{row['path']}": functools.partial(
            store.model_file_bytes, model["artifact_location"], row["path"]) for row in model["files"]}
    sizes = {row["path"]: row["size"] for row in files} | {
        f"{names.MODEL_NAME}/{row['path']}": row["size"] for row in (model["files"] if model else [])}
    choices = [path for path in fetchers if previewable(path, sizes[path])]
    picked = st.selectbox("Preview", choices, index=None, key=f"preview-{run_id}", placeholder="pick a file to see",
                          help="text and logs (their end), JSON and YAML, CSV, images; binary files are download only")
    if picked:
        with st.container(border=True, key=f"preview-box-{run_id}"):
            st.caption(f"`{picked}` · {formatting.size(sizes[picked])}")
            try:
                show(fetchers[picked](), picked, f"preview-{run_id}")
            except store.ArtifactNotFoundError as e:
                st.info(f"{e}.")
    st.subheader("Run artifacts")
    if not files:
        st.info("This run has no artifacts yet.")
    _file_rows(files, lambda path: store.artifact_bytes(run_id, path, version), "artifact")
    st.subheader("Logged model")
    if model is None:
        st.info(f"{no_model}.", icon=":material/inventory_2:")
        return
    st.code(model["model_uri"], language=None)
    left, right = st.columns(2)
    left.markdown("**Signature**")
    left.code(f"inputs:  {model['inputs']}\noutputs: {model['outputs']}", language=None)
    left.caption("flavors: " + ", ".join(model["flavors"]))
    right.markdown("**Preprocessing**")
    right.json(model["preprocessing"] or {}, expanded=2)
    with st.expander(f"Model files ({len(model['files'])})"):
        _file_rows(model["files"], lambda path: store.model_file_bytes(model["artifact_location"], path), "model_file")
