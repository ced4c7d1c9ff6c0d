"""The Runs page's filters and sort as MLflow search clauses, so the store filters, orders and pages in SQL.

Plain functions, no Streamlit. MLflow's search has no OR and no IN for params, so a dataset or model filter
takes one value; status takes several (as the other statuses left out: IN takes run ids only); tags must all
match (`and`). What
MLflow cannot sort by (best val accuracy comes from histories; training and queue times from tags) is
sorted within the page, and the page says so.
"""
from __future__ import annotations

from collections.abc import Sequence

from pipeline import names

STATUSES = (names.SCHEDULED, names.RUNNING, names.FINISHED, names.FAILED, names.KILLED)
TOP_LEVEL = f"tags.`{names.TAG_SWEEP_ID}` IS NULL"  # not a sweep's run: those come with their parent's row
NEWEST_FIRST = "attributes.start_time DESC"
SORTABLE = {  # a Runs table column -> what MLflow orders by; params order as text, as MLflow stores them
    "start": "attributes.start_time", "name": "attributes.run_name", "status": "attributes.status",
    "test acc": f"metrics.`{names.TEST_ACCURACY}`", "test F1": f"metrics.`{names.TEST_F1}`",
    **{p: f"params.`{p}`" for p in ("dataset", "model", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
                                    "schedule", "augment")},
}


class QueryError(ValueError):
    """A value that MLflow's filter syntax cannot quote."""


def quoted(value: str) -> str:
    """`value` as an MLflow filter string: in single quotes, else double; MLflow's parser has no escapes."""
    for quote in ("'", '"'):
        if quote not in value:
            return f"{quote}{value}{quote}"
    raise QueryError(f"cannot filter on {value!r}: it holds both kinds of quote")


def field(column: str) -> str:
    """`params.seed`, `metrics.x/y`, `tags.a.b` with the key in backticks, which any key survives."""
    prefix, _, key = column.partition(".")
    return f"{prefix}.`{key}`"


def clauses(statuses: Sequence[str] = (), params: dict[str, str] | None = None,
            tags: Sequence[str] = ()) -> list[str]:
    """MLflow filter clauses: statuses (any of), `params.key = value` each, and "key=value" tags (all of)."""
    out = []
    if len(statuses) == 1:
        out.append(f"attributes.status = {quoted(statuses[0])}")
    elif statuses:  # IN takes run ids only: the other statuses, of a fixed five, are left out instead
        out += [f"attributes.status != {quoted(s)}" for s in STATUSES if s not in statuses]
    for key, value in (params or {}).items():
        out.append(f"{field('params.' + key)} = {quoted(value)}")
    for tag in tags:
        key, _, value = tag.partition("=")
        out.append(f"{field('tags.' + key)} = {quoted(value)}")
    return out


def joined(*parts: str | Sequence[str]) -> str:
    """One filter string from a person's filter and clauses (MLflow joins with `and` only)."""
    flat = [p for part in parts for p in ([part] if isinstance(part, str) else part)]
    return " and ".join(p.strip() for p in flat if p and p.strip())


def order_by(column: str, descending: bool) -> list[str] | None:
    """MLflow's order_by for a Runs table column, newest first among equals; None when MLflow cannot sort by
    it (the page sorts within its rows and says so)."""
    if column in SORTABLE:
        key = SORTABLE[column]
    elif column.startswith(("params.", "metrics.", "tags.")):
        key = field(column)
    else:
        return None
    first = f"{key} {'DESC' if descending else 'ASC'}"
    return [first] if key == "attributes.start_time" else [first, NEWEST_FIRST]
