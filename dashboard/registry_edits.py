"""The Registry page's everyday edits: tags on models and versions, deleting a version (its aliases moved first
or gone with it) and deleting a model (only once no alias points into it, or after the person confirms).

Every change goes through pipeline.serving.registry (MLflow's registry API), so `mlflow ui` shows the same.
`done(message)` is the page's own: it refreshes the listing and says what changed.
"""
from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from mlflow.exceptions import MlflowException

from dashboard import store
from pipeline.serving import registry

FAILURES = (registry.RegistryError, store.TrackingError, MlflowException)
KEEP_ALIASES, DROP_ALIASES = "move them to another version", "delete them with it"


def reason(e: Exception) -> str:
    """A failed registry change in one line (MLflow's 403 says which permission it needs)."""
    return str(store.refused(e) or getattr(e, "message", e)).splitlines()[0]


def locked(name: str, action: str = "model") -> bool:
    """True, after saying why, when the signed-in person may not change model `name` this way."""
    refusal = store.refusal(action, model=name)
    if refusal:
        st.info(refusal, icon=":material/lock:")
    return bool(refusal)


def _targets(versions: list) -> list[tuple[str, int | None]]:
    """Each model, then its versions: what a tag or a description can be put on."""
    targets = []
    for name in sorted({v.name for v in versions}):
        targets.append((name, None))
        targets += [(name, v.version) for v in sorted((v for v in versions if v.name == name), key=lambda v: v.version)]
    return targets


def _label(target: tuple[str, int | None]) -> str:
    return f"{target[0]} (the model)" if target[1] is None else f"{target[0]} v{target[1]}"


def tags_form(versions: list, done: Callable[[str], None]) -> None:
    """The tags of the model or version picked: each removable, and a key and value to add or change one."""
    target = st.selectbox("Tags of", _targets(versions), key="tags_target", format_func=_label)
    name, version = target
    where = f"{name}_{version}"
    try:
        tags = store.model_tags(name, version)
    except FAILURES as e:
        st.error(reason(e))
        return
    blocked = locked(name)
    if not tags:
        st.caption(f"{_label(target)} has no tags yet" + ("." if blocked else ": add one below (e.g. reviewed_by)."))
    for i, (key, value) in enumerate(sorted(tags.items())):
        text, remove = st.columns([4, 1], vertical_alignment="center")
        text.markdown(f"`{key}` = {value}" if value else f"`{key}`")
        if not blocked and remove.button("Remove", key=f"registry-tag-remove-{where}-{i}", icon=":material/close:",
                                         type="tertiary"):
            try:
                registry.delete_tag(name, key, version, client=store.client())
            except FAILURES as e:
                st.error(reason(e))
                return
            done(f"Removed tag {key} from {_label(target)}.")
    if blocked:
        return
    with st.form(f"registry-tag-{where}", border=True):
        left, right = st.columns(2)
        key = left.text_input("Tag key", key=f"registry-tag-key-{where}", placeholder="reviewed_by")
        value = right.text_input("Tag value", key=f"registry-tag-value-{where}", placeholder="ana")
        if st.form_submit_button("Set tag", icon=":material/sell:"):
            try:
                stored = registry.set_tag(name, key, value, version, client=store.client())
            except FAILURES as e:
                st.error(reason(e), icon=":material/label_off:")
                return
            done(f"Tag {stored} set on {_label(target)}.")


def delete_version_form(versions: list, done: Callable[[str], None]) -> None:
    """Delete one version after a confirmation that names its aliases, which move first or go with it."""
    choices = [t for t in _targets(versions) if t[1] is not None]
    name, version = st.selectbox("Version to delete", choices, key="delete_version_target", format_func=_label)
    if locked(name, "delete_model"):
        return
    where = f"{name}_{version}"
    aliases = next(v.aliases for v in versions if v.name == name and v.version == version)
    others = [v.version for v in versions if v.name == name and v.version != version]
    move_to = None
    if aliases:
        held = ", ".join(f"@{a}" for a in aliases)
        st.warning(f"{name} v{version} holds {held}: whatever loads {held} uses it.", icon=":material/sell:")
        how = st.radio("Its aliases", [KEEP_ALIASES, DROP_ALIASES] if others else [DROP_ALIASES],
                       key=f"delete_version_how_{where}", horizontal=True)
        if how == KEEP_ALIASES:
            move_to = st.selectbox("Move them to", others, key=f"delete_version_move_{where}",
                                   format_func=lambda n: f"v{n}")
    said = (f" ({', '.join('@' + a for a in aliases)} " + (f"moved to v{move_to})" if move_to else "deleted with it)")
            if aliases else "")
    sure = st.checkbox(f"Delete {name} v{version}{said}", key=f"delete_version_ok_{where}")
    if st.button(f"Delete v{version}", key="delete_version", type="primary", icon=":material/delete:",
                 disabled=not sure):
        try:
            gone = registry.delete_version(name, version, move_to, client=store.client())
        except FAILURES as e:
            st.error(reason(e))
            return
        moved = (f" {', '.join('@' + a for a in gone)} " + (f"now on v{move_to}." if move_to else "deleted with it.")
                 if gone else "")
        done(f"Deleted {name} v{version}.{moved}")


def delete_model_form(versions: list, done: Callable[[str], None]) -> None:
    """Delete a whole model: only without aliases, or once the person confirmed the ones named."""
    name = st.selectbox("Model to delete", sorted({v.name for v in versions}), key="delete_model_target")
    if locked(name, "delete_model"):
        return
    mine = [v for v in versions if v.name == name]
    held = [f"@{a} → v{v.version}" for v in mine for a in v.aliases]
    st.caption(f"{name} has {len(mine)} version{'s' if len(mine) != 1 else ''}; deleting the model deletes them all "
               "(their runs stay).")
    confirmed = True
    if held:
        st.warning(f"Aliases point into {name}: {', '.join(held)}. Whatever loads them will fail.",
                   icon=":material/link_off:")
        confirmed = st.checkbox("Delete it with its aliases", key=f"delete_model_ok_{name}")
    sure = st.checkbox(f"Delete {name} and its {len(mine)} version{'s' if len(mine) != 1 else ''}",
                       key=f"delete_model_sure_{name}")
    if st.button(f"Delete model {name}", key="delete_model", icon=":material/delete_forever:",
                 disabled=not (sure and confirmed)):
        try:
            registry.delete_model(name, aliases_confirmed=bool(held), client=store.client())
        except FAILURES as e:
            st.error(reason(e))
            return
        done(f"Deleted model {name}.")


def delete_forms(versions: list, done: Callable[[str], None]) -> None:
    """The Delete tab: a version, then a whole model."""
    delete_version_form(versions, done)
    st.divider()
    delete_model_form(versions, done)
