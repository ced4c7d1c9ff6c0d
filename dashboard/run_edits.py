"""The everyday edits of a run, as the run page and the Runs table offer them: rename, note, tags, delete, restore.

Every change goes through dashboard.store (MLflow's public client), so `mlflow ui` shows the same. Each
form is keyed by the run it edits, so choosing another run starts it afresh; a refusal is one message
in place and changes nothing. Delete asks first, in a box kept in st.session_state (as Cancel does):
a live page's refresh must not close a half-made choice.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from dashboard import formatting, store, tables
from dashboard.run_search import RESERVED, short_note
from pipeline import names

def split_tags(tags: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the person's own tags, Runboard's and MLflow's) by key; the note has its own place."""
    shown = tables.user_tags(tags)  # the traceback has its own box; MLflow's bookkeeping is left out
    own = {k: v for k, v in shown.items() if not k.startswith(RESERVED)}
    system = {k: v for k, v in shown.items() if k.startswith(RESERVED) and k != names.TAG_NOTE}
    return own, system


def deleted_on(seconds: float | None) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if seconds else "a date not recorded"


def _done(message: str) -> None:
    """Say what changed after the rerun that shows it everywhere."""
    st.session_state["edit_flash"] = message
    st.rerun()


def flash() -> None:
    """The last edit's confirmation, once."""
    message = st.session_state.pop("edit_flash", None)
    if message:
        st.toast(message, icon=":material/check_circle:")


# --- rename ----------------------------------------------------------------------------------------

def rename_form(run_id: str, run_name: str, where: str) -> None:
    if refusal := store.refusal("edit", run_id=run_id):
        st.caption(refusal)
        return
    with st.form(f"rename-{where}-{run_id}", border=False):
        new = st.text_input("New name", value=run_name, key=f"rename-name-{where}-{run_id}", max_chars=250)
        if st.form_submit_button("Rename", icon=":material/edit:"):
            try:
                stored = store.rename_run(run_id, new)
            except store.EditError as e:
                st.error(str(e), icon=":material/edit_off:")
                return
            _done(f"Renamed to {stored}.")


# --- note and tags ---------------------------------------------------------------------------------

def note_section(run: dict) -> None:
    """The note shown as Markdown, and the box that edits it (MLflow's run description)."""
    run_id, note = run["run_id"], run["tags"].get(names.TAG_NOTE, "")
    if note:
        with st.container(border=True, key=f"note-shown-{run_id}"):
            st.markdown(note)
    if store.refusal("edit", run_id=run_id):
        return  # the person reads the note; the tags' section says why they cannot change it
    with st.expander("Edit note" if note else "Add a note", icon=":material/edit_note:"):
        with st.form(f"note-{run_id}", border=False):
            text = st.text_area("Note (Markdown)", value=note, key=f"note-text-{run_id}", height=150,
                                help="MLflow's run description (mlflow.note.content): mlflow ui shows the same; "
                                     "the Runs table shows its first line and its search finds it")
            if st.form_submit_button("Save note", icon=":material/save:"):
                try:
                    store.set_note(run_id, text)
                except store.EditError as e:
                    st.error(str(e))
                    return
                _done("Note saved." if text.strip() else "Note removed.")


def tags_section(run: dict) -> None:
    """The person's own tags (add, change, remove), then Runboard's and MLflow's, read-only and apart."""
    run_id = run["run_id"]
    own, system = split_tags(run["tags"])
    refusal = store.refusal("edit", experiment_id=run["experiment_id"])
    st.markdown("**Your tags**")
    if refusal:
        st.caption(refusal)
    if not own:
        st.caption("No tags of your own yet" + ("." if refusal else ": add one below (e.g. reviewed_by)."))
    for i, (key, value) in enumerate(own.items()):
        text, remove = st.columns([3, 2], vertical_alignment="center")  # "Remove" whole in a third of the page
        text.markdown(f"`{key}` = {value}" if value else f"`{key}`")
        if not refusal and remove.button("Remove", key=f"tag-remove-{run_id}-{i}", icon=":material/close:",
                                         type="tertiary"):
            try:
                store.delete_tag(run_id, key)
            except store.EditError as e:
                st.error(str(e))
                return
            _done(f"Tag {key} removed.")
    if not refusal:
        _tag_form(run_id)
    st.markdown("**Runboard's and MLflow's tags** (read-only)")
    st.dataframe(pd.DataFrame(system.items(), columns=["tag", "value"]), hide_index=True, key=f"system-tags-{run_id}",
                 column_config={"tag": st.column_config.TextColumn(width=215),
                                "value": st.column_config.TextColumn(width="large")})


def _tag_form(run_id: str) -> None:
    """A key and a value: a new tag, or a new value for one already set."""
    with st.form(f"tag-{run_id}", border=True, clear_on_submit=False):
        left, right = st.columns(2)
        key = left.text_input("Tag key", key=f"tag-key-{run_id}", placeholder="reviewed_by",
                              help="a key you set again changes its value")
        value = right.text_input("Tag value", key=f"tag-value-{run_id}", placeholder="ana")
        if st.form_submit_button("Set tag", icon=":material/sell:"):
            try:
                stored = store.set_tag(run_id, key, value)
            except store.EditError as e:
                st.error(str(e), icon=":material/label_off:")
                return
            _done(f"Tag {stored} set.")


# --- delete and restore ----------------------------------------------------------------------------

def _ask_key(where: str) -> str:
    return f"delete-ask-{where}"


def _ask(where: str, run_ids: Sequence[str]) -> None:
    st.session_state[_ask_key(where)] = list(run_ids)


def delete_button(run_ids: Sequence[str], where: str, label: str = "Delete", **kwargs) -> None:
    """The first step: asks, naming the runs, in delete_confirmation."""
    refusal = store.refusal("delete", run_id=run_ids[0]) if run_ids else None
    if refusal:
        kwargs["help"] = refusal
    st.button(label, key=f"delete-{where}", icon=":material/delete:", on_click=_ask, args=(where, list(run_ids)),
              disabled=not run_ids or bool(refusal), **kwargs)


def delete_confirmation(where: str) -> None:
    """The second step: what would be deleted, what refuses, which registered versions point to it."""
    run_ids = st.session_state.get(_ask_key(where))
    if not run_ids:
        return
    plan = store.deletion_plan(run_ids)
    with st.container(border=True, key=f"delete-box-{where}"):
        listed = ", ".join(f"**{name}**" for name in plan.runs.values())
        st.markdown(f"**Delete {len(plan.runs)} run{'s' if len(plan.runs) != 1 else ''}?** {listed}")
        if plan.children:
            st.markdown(f"Its sweep or study runs go with it: **{len(plan.children)} more run"
                        f"{'s' if len(plan.children) != 1 else ''}** ({', '.join(plan.children.values())}).")
        if plan.refused:
            st.error("Cannot delete: " + "; ".join(plan.refused) + ".", icon=":material/block:")
            st.button("Close", key=f"delete-close-{where}", on_click=_ask, args=(where, []))
            return
        confirmed = True
        if plan.versions:
            st.warning("Registered model versions point to these runs: " + ", ".join(plan.versions)
                       + ". They stay registered, but their run will be in the Deleted view.", icon=":material/inventory_2:")
            confirmed = st.checkbox("Delete anyway", key=f"delete-versions-ok-{where}")
        st.caption("MLflow's soft delete: the runs move to the Runs page's Deleted view, where they can be restored.")
        yes, no, _ = st.columns([1, 1, 3])
        if yes.button("Delete", key=f"delete-confirm-{where}", type="primary", icon=":material/delete:",
                      disabled=not confirmed):
            try:
                store.delete_runs(run_ids, versions_confirmed=bool(plan.versions))
            except store.EditError as e:
                st.error(str(e))
                return
            _ask(where, [])
            _done(f"Deleted {len(plan.all_ids)} run{'s' if len(plan.all_ids) != 1 else ''}: restore "
                  "from the Runs page's Deleted view.")
        no.button("Keep", key=f"delete-keep-{where}", on_click=_ask, args=(where, []))


def restore(run_ids: Sequence[str]) -> None:
    try:
        restored = store.restore_runs(list(run_ids))
    except store.EditError as e:
        st.error(str(e))
        return
    _done(f"Restored {', '.join(restored)}.")


def deleted_notice(e: store.RunDeletedError) -> None:
    """A deleted run's link: when it was deleted, and its way back."""
    st.warning(f"**{e.run_name}** was deleted on {deleted_on(e.deleted_at)}. Restore it?",
               icon=":material/delete:")
    if st.button("Restore run", key=f"restore-{e.run_id}", icon=":material/restore_from_trash:"):
        restore([e.run_id])


def deleted_table(runs: list) -> pd.DataFrame:
    """The Deleted view's rows: name, status, when deleted, the note's first line."""
    return pd.DataFrame([{"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status,
                          "deleted": deleted_on(float(r.data.tags[names.TAG_DELETED]))
                          if names.TAG_DELETED in r.data.tags else formatting.MISSING,
                          "note": short_note(r.data.tags.get(names.TAG_NOTE))} for r in runs],
                        columns=["run_id", "name", "status", "deleted", "note"])
