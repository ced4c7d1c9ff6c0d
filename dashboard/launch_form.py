"""The launch form, built from RunConfig's fields: one widget per field, with its help and choices.

Nothing here invents a default or a rule: values start from a RunConfig (the defaults, or a cloned
run's params) and go back through RunConfig.from_params, so the form refuses exactly what the CLI
refuses, with the same message.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import streamlit as st

from dashboard import refresh
from pipeline import settings
from pipeline import names
from pipeline.config import DATASETS, IMAGEFOLDER, ConfigError, RunConfig
from pipeline.names import IMAGE_SUFFIXES
from pipeline.imaging import folders

KEY = "launch."  # session-state prefix of the form's widgets
FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
OPTIONS = ("experiment", "run_name", "register")  # run options, not params
MAIN = {  # shown at once, by column; the rest sit under "More options"
    "Data and model": ("dataset", "model", "augment", "flip", "device"),
    "Optimisation": ("epochs", "batch_size", "optimizer", "lr", "schedule"),
    "Regularisation": ("weight_decay", "label_smoothing", "seed"),
    "Run": ("experiment", "run_name", "register"),
}
MORE = tuple(name for name in FIELDS if not any(name in names for names in MAIN.values()))
SCAN_DEPTH = 2  # folder levels under the data root searched for class-per-folder datasets


def _has_image(folder: Path) -> bool:
    try:
        return any(Path(e.name).suffix.lower() in IMAGE_SUFFIXES for e in os.scandir(folder) if e.is_file())
    except OSError:
        return False


@st.cache_data(ttl=refresh.IMAGE_FOLDERS_TTL, show_spinner=False)
def image_folders(root: str) -> list[str]:
    """`imagefolder:REL` for folders under the data root with at least two class folders of images."""
    found, frontier = [], [Path(root)]
    for _ in range(SCAN_DEPTH):
        below = []
        for folder in frontier:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            for child in children:
                classes = [c for c in child.iterdir() if c.is_dir() and not c.name.startswith(".")] \
                    if os.access(child, os.R_OK) else []
                if len(classes) >= 2 and sum(_has_image(c) for c in classes[:20]) >= 2:
                    found.append(IMAGEFOLDER + child.relative_to(root).as_posix())
                else:
                    below.append(child)
        frontier = below
    return found


def dataset_options(current: str) -> list[str]:
    """Built-in datasets, then image folders found under the data root (and the current value)."""
    options = list(DATASETS) + image_folders(str(settings.data_root().resolve()))
    return options if current in options else options + [current]


@st.cache_data(ttl=refresh.FOLDER_SCAN_TTL, show_spinner="Reading the folder's image headers…")
def folder_summary(path: str) -> dict:
    """What an image folder holds, from its files' headers (no pixels decoded), and the size a run takes."""
    found = folders.scan(Path(path))
    return {**found.summary(), "size": list(folders.resolve_size(found.sizes))}


def summary_text(summary: dict) -> str:
    """One paragraph: images per class, sizes, grayscale or RGB, the size a run trains at, bad files."""
    counts = ", ".join(f"{name} {n:,}" for name, n in summary["counts"].items())
    (w0, h0), (w1, h1) = summary["min_size"], summary["max_size"]
    sizes = f"all {w0}×{h0} px" if (w0, h0) == (w1, h1) else f"from {w0}×{h0} to {w1}×{h1} px"
    height, width = summary["size"]
    text = (f"**{summary['images']:,} images** in {len(summary['counts'])} classes ({counts}); {sizes}, "
            f"{'grayscale' if summary['grayscale'] else 'RGB'}. With image size 0 a run trains at "
            f"**{width}×{height} px** (224 with ImageNet weights).")
    if summary["skipped"]:
        text += f" {len(summary['skipped'])} unreadable file(s) will be skipped: " + \
            "; ".join(summary["skipped"][:3]) + ("…" if len(summary["skipped"]) > 3 else "")
    return text


def show_folder_summary(dataset: str) -> None:
    """The chosen image folder's contents under the form, before anything is launched."""
    if not dataset.startswith(IMAGEFOLDER):
        return
    try:
        path = RunConfig(dataset=dataset).imagefolder_path()
        summary = folder_summary(str(path))
    except (ConfigError, folders.DataError) as e:
        st.warning(str(e), icon=":material/folder_off:")
        return
    st.info(summary_text(summary), icon=":material/folder_open:")


def from_run_sizes(params: dict[str, str]) -> dict[str, str]:
    """A clone of an image-folder run with image_size 0 pins the size that run resolved (if square)."""
    resolved = params.get(names.PARAM_IMAGE_SIZE_RESOLVED, "")
    height, _, width = resolved.partition("x")
    if params.get("dataset", "").startswith(IMAGEFOLDER) and params.get("image_size") == "0" \
            and height == width and height.isdigit():
        return {**params, "image_size": height}
    return params


def widget_value(config: RunConfig, name: str):
    value = getattr(config, name)
    return str(value) if isinstance(value, float) else value  # floats are typed as text: 3e-4 stays readable


def prefill(config: RunConfig, source: str | None) -> None:
    """Start the form from `config` once per source (a clone's run id, or None for the defaults)."""
    kept = all(KEY + name in st.session_state for name in FIELDS)  # widget state is dropped off the page
    if kept and st.session_state.get(KEY + "source", "unset") == source:
        return
    for name in FIELDS:
        st.session_state[KEY + name] = widget_value(config, name)
    st.session_state[KEY + "source"] = source


def from_run(params: dict[str, str], **options: str) -> tuple[RunConfig, list[str]]:
    """A cloned run's config, and the messages of params that no longer validate (left at defaults)."""
    params = from_run_sizes(params)
    try:
        return RunConfig.from_params(params, **options), []
    except ConfigError:
        pass
    kept, problems = {}, []
    for name, value in params.items():
        try:
            RunConfig.from_params({**kept, name: value})
            kept[name] = value
        except ConfigError as e:
            problems.append(str(e))
    try:
        return RunConfig.from_params(kept, **options), problems
    except ConfigError as e:
        return RunConfig.from_params(kept), problems + [str(e)]


def _widget(name: str, experiments: list[str]) -> None:
    f, key = FIELDS[name], KEY + name
    label, help_text = name.replace("_", " "), f.metadata["help"]
    if name == "dataset":
        st.selectbox(label, dataset_options(st.session_state[key]), key=key, help=help_text +
                     f". Image folders are listed from the data root {settings.data_root()}")
        st.button("Look for new image folders", key="refresh_folders", icon=":material/refresh:", type="tertiary",
                  on_click=image_folders.clear, help=f"the list is kept {refresh.IMAGE_FOLDERS_TTL} s; "
                                                     "images copied in just now appear after this")
    elif name == "experiment":
        options = experiments if st.session_state[key] in experiments else experiments + [st.session_state[key]]
        st.selectbox(label, options, key=key, accept_new_options=True,
                     help=help_text + "; type a new name to create one")
    elif f.metadata["choices"]:
        st.selectbox(label, f.metadata["choices"], key=key, help=help_text)
    elif isinstance(f.default, bool):
        st.checkbox(label, key=key, help=help_text)
    elif isinstance(f.default, int):
        st.number_input(label, step=1, key=key, help=help_text)
    else:
        st.text_input(label, key=key, help=help_text)


def config_widgets(experiments: list[str]) -> None:
    """Every RunConfig field as a widget, the common ones in columns, the rest under More options."""
    for column, (title, fields) in zip(st.columns(len(MAIN)), MAIN.items()):
        with column:
            st.markdown(f"**{title}**")
            for name in fields:
                _widget(name, experiments)
    with st.expander("More options"):
        for column, name in zip(st.columns(len(MORE)), MORE):
            with column:
                _widget(name, experiments)


def config_from_state() -> RunConfig:
    """The config the widgets hold now; ConfigError (the CLI's message) when a value is refused."""
    values = {name: st.session_state[KEY + name] for name in FIELDS}
    params = {k: "" if v is None else str(v).strip() for k, v in values.items() if k not in OPTIONS}
    options = {k: (values[k] or "").strip() for k in OPTIONS}
    if not options["experiment"]:
        raise ConfigError("experiment must not be empty")
    return RunConfig.from_params(params, **options)
