"""Small pieces every reading page shares: the error edge, the empty state, status badges, URL lists."""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from urllib.parse import urlparse

import streamlit as st
from mlflow.exceptions import MlflowException

from dashboard import run_edits, store
from pipeline import names
STATUS_COLORS = {"SCHEDULED": "gray", "RUNNING": "blue", "FINISHED": "green", "FAILED": "red", "KILLED": "orange"}
STATUS_CSS = {"SCHEDULED": "#9ca3af", "RUNNING": "#60a5fa", "FINISHED": "#4ade80", "FAILED": "#f87171",
              "KILLED": "#fb923c"}  # pill colors in tables, same hues as the badges
SWEEP_CSS = "#c4b5fd"  # a sweep's group row
STATUS_ICONS = {"SCHEDULED": ":material/schedule:", "RUNNING": ":material/autorenew:",
                "FINISHED": ":material/check_circle:", "FAILED": ":material/error:", "KILLED": ":material/cancel:"}
LIVE_STATUSES = names.ACTIVE
FIRST_RUN = "python -m pipeline train --dataset digits --model cnn --epochs 5"


def guarded(body: Callable[..., None]) -> Callable[..., None]:
    """`body` with the page's error edge: a store problem the user can act on becomes one message."""
    @functools.wraps(body)
    def run(*args, **kwargs) -> None:
        try:
            body(*args, **kwargs)
        except (store.PermissionRefused, MlflowException) as e:  # MLflow's 403 at a click the page allowed
            if store.refused(e) is None and not isinstance(e, store.PermissionRefused):
                raise
            st.error(str(store.refused(e) or e), icon=":material/lock:")
        except store.TrackingError as e:
            st.error(f"**The MLflow tracking store cannot be read.** {e}\n\nCheck `MLFLOW_TRACKING_URI` "
                     "(or start the server it points to) and reload the page.", icon=":material/cloud_off:")
        except store.FilterError as e:
            st.error(str(e), icon=":material/filter_alt_off:")
        except store.RunDeletedError as e:
            run_edits.deleted_notice(e)
        except store.RunNotFoundError as e:
            st.error(f"{e}", icon=":material/search_off:")
    return run


def no_runs_yet(experiment: str | None = None) -> None:
    """The friendly empty state: how to get a first run, from the browser or the shell."""
    where = f"in experiment **{experiment}** " if experiment else ""
    st.info(f"No runs {where}yet: launch one.", icon=":material/rocket_launch:")
    st.page_link("views/launch.py", label="Launch a run", icon=":material/rocket_launch:")
    st.caption("Or from a shell in the project folder (a 5-epoch run takes under a minute on a CPU):")
    st.code(FIRST_RUN + (f" --experiment {experiment}" if experiment and experiment != "Default" else ""),
            language="bash")


def reading_page(title: str):
    """A reading page's start: its title, then the newest active runs (a picker's choices), or None after the
    empty state. A link's runs beyond them are read by id (store.runs_by_id)."""
    st.title(title)
    all_runs = store.runs(limit=store.PICKER_RUNS)
    if all_runs.empty:
        no_runs_yet()
        return None
    return all_runs


def queue_request(action, run_id: str) -> bool:
    """Cancel or resume a run (pipeline.queue.jobs.cancel/resume): its answer as a toast, a refusal in place;
    True when it was done. The cached queue and run are dropped, so every view shows the change at once."""
    from pipeline.queue import jobs

    try:
        st.toast(action(run_id, store.client()))
        done = True
    except jobs.JobError as e:
        st.error(str(e))
        done = False
    store.forget_queue()
    store.forget_run(run_id)
    return done


def status_badge(status: str) -> None:
    st.badge(status, icon=STATUS_ICONS.get(status), color=STATUS_COLORS.get(status, "gray"))


def query_list(name: str) -> list[str]:
    """A comma-separated query param (`?runs=a,b`) as a list without blanks or repeats."""
    raw = ",".join(st.query_params.get_all(name))
    return list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))


def run_options(runs) -> dict[str, str]:
    """How runs are named in pickers (run id -> "name · status · short id"), built once per listing."""
    rows = zip(runs["run_id"], runs["run_name"], runs["status"])
    return {run_id: f"{name} · {status.lower()} · {run_id[:8]}" for run_id, name, status in rows}


def unknown_page(url: str | None, base_path: str, known: Iterable[str]) -> str | None:
    """The page path a browser asked for when no page has it (Streamlit then shows the default page), else None."""
    if not url:
        return None
    path = urlparse(url).path.strip("/")
    base = base_path.strip("/")
    if base and (path == base or path.startswith(base + "/")):
        path = path[len(base):].strip("/")
    return path if path and path not in set(known) else None


@functools.cache
def favicon():
    """The tab icon, drawn here: a `:material/...:` page icon makes the browser fetch it from fonts.gstatic.com,
    which an offline deployment cannot reach (the in-page material icons come from Streamlit's own font file)."""
    from PIL import Image, ImageDraw

    icon = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.rounded_rectangle((2, 2, 62, 62), radius=12, fill="#2563eb")
    draw.line([(12, 48), (26, 30), (37, 38), (52, 16)], fill="white", width=6, joint="curve")
    return icon
