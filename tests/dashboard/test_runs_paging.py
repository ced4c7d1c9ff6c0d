"""The Runs page pages in SQL: every run of a big experiment can be reached, counted, filtered and sorted by
MLflow's search, with a sweep's runs kept under their parent across pages (issue 25).

Run: .venv/bin/python -m pytest tests/dashboard/test_runs_paging.py -q
"""
from __future__ import annotations

import time

import pytest
from mlflow.entities import Metric, Param, RunTag, ViewType

from dashboard import run_query
from dashboard.store import listings, mlflow_internals
from pipeline import names
from pipeline.runs import tracking
from tests.dashboard.conftest import open_page, texts

EXPERIMENT = "dashboard-many"
PLAIN = 230  # plain runs, plus one sweep of 3: 231 rows to page through, 234 runs


@pytest.fixture(scope="module")
def many(store) -> dict:
    """230 finished runs (every 7th FAILED), oldest first one ms apart, test_accuracy rising with age order
    reversed so the oldest scores best; a tag only on the oldest; and a sweep whose parent is the newest row."""
    client = tracking.connect()
    experiment = tracking.experiment_id(client, EXPERIMENT)
    t0, ids = int(time.time() * 1000) - 3_600_000, []
    for i in range(PLAIN):
        run_id = client.create_run(experiment, start_time=t0 + i, run_name=f"many-{i:03d}").info.run_id
        client.log_batch(run_id, metrics=[Metric(names.TEST_ACCURACY, 1 - i / 1000, t0 + i, 0)],
                         params=[Param("model", "cnn" if i % 2 else "mlp"), Param("dataset", "digits")],
                         tags=[RunTag("owner", "oldest")] if i == 0 else [])
        client.set_terminated(run_id, "FAILED" if i % 7 == 0 else "FINISHED", end_time=t0 + i + 1)
        ids.append(run_id)
    parent = client.create_run(experiment, start_time=t0 + PLAIN + 10, run_name="many-sweep",
                               tags={names.TAG_SWEEP: "grid"}).info.run_id
    children = []
    for j in range(3):
        child = client.create_run(experiment, start_time=t0 + PLAIN + 11 + j, run_name=f"many-sweep-{j}",
                                  tags={names.TAG_SWEEP_ID: parent, names.TAG_PARENT: parent}).info.run_id
        client.log_batch(child, params=[Param("model", "cnn"), Param("dataset", "digits")])
        client.set_terminated(child, "FINISHED")
        children.append(child)
    client.set_terminated(parent, "FINISHED")
    return {"experiment": experiment, "ids": ids, "parent": parent, "children": children}


# ----- the clauses -----------------------------------------------------------------------------------------

def test_clauses_quote_values_and_leave_out_statuses_not_chosen():
    assert run_query.clauses(["FAILED"]) == ["attributes.status = 'FAILED'"]
    assert run_query.clauses(["FAILED", "KILLED"]) == [
        "attributes.status != 'SCHEDULED'", "attributes.status != 'RUNNING'", "attributes.status != 'FINISHED'"]
    assert run_query.clauses(params={"dataset": "imagefolder:it's"}, tags=["runboard.x=a=b"]) == [
        """params.`dataset` = "imagefolder:it's\"""", "tags.`runboard.x` = 'a=b'"]
    with pytest.raises(run_query.QueryError, match="both kinds of quote"):
        run_query.quoted("""it's "quoted\"""")
    assert run_query.joined("  params.a = '1' ", ["", "metrics.b > 2"], "") == "params.a = '1' and metrics.b > 2"


def test_order_by_names_what_mlflow_sorts_and_none_for_what_it_cannot():
    assert run_query.order_by("start", True) == ["attributes.start_time DESC"]
    assert run_query.order_by("test acc", False) == [f"metrics.`{names.TEST_ACCURACY}` ASC", run_query.NEWEST_FIRST]
    assert run_query.order_by("params.seed", True) == ["params.`seed` DESC", run_query.NEWEST_FIRST]
    assert run_query.order_by("lr", True) == ["params.`lr` DESC", run_query.NEWEST_FIRST]
    for computed in ("best val acc", "training", "queued", "note"):
        assert run_query.order_by(computed, True) is None


@pytest.mark.parametrize("clauses", [
    [], ["attributes.status = 'FAILED'"], run_query.clauses(["FAILED", "KILLED"]),
    run_query.clauses(params={"model": "cnn"}), run_query.clauses(tags=["owner=oldest"]),
    [f"metrics.{names.TEST_ACCURACY} > 0.9", "params.model = 'mlp'"], [run_query.TOP_LEVEL]])
def test_the_sql_count_is_what_mlflows_search_finds(many, clauses):
    client = tracking.connect()
    query = run_query.joined(clauses)
    found = client.search_runs([many["experiment"]], query, ViewType.ACTIVE_ONLY, max_results=5000)
    assert mlflow_internals.sql_run_count(client, [many["experiment"]], query) == len(found)


# ----- the store's pages -----------------------------------------------------------------------------------

def test_pages_hold_every_run_once_with_a_sweeps_runs_beside_its_parent(many):
    pages = [listings.runs_page(many["experiment"], page=p, size=100) for p in (1, 2, 3)]
    assert [p.total for p in pages] == [PLAIN + 1] * 3 and [p.rows for p in pages] == [100, 100, 31]
    assert [p.more for p in pages] == [True, True, False]
    paged = [r for p in pages for r in p.runs["run_id"].iloc[:p.rows]]
    assert len(paged) == len(set(paged)) == PLAIN + 1 and not set(paged) & set(many["children"])
    assert paged[0] == many["parent"] and paged[-1] == many["ids"][0]  # newest first; the oldest reached
    assert set(pages[0].runs["run_id"].iloc[100:]) == set(many["children"])  # came with their parent's page
    beyond = listings.runs_page(many["experiment"], page=9, size=100)
    assert beyond.runs.empty and beyond.total == PLAIN + 1


def test_a_page_is_sorted_by_the_store_across_every_run(many):
    worst = listings.runs_page(many["experiment"], "", run_query.order_by("test acc", False), page=1, size=100)
    assert worst.runs["run_name"].iloc[0] == f"many-{PLAIN - 1:03d}"  # the lowest test accuracy of all 230
    failed = listings.runs_page(many["experiment"], run_query.joined(run_query.clauses(["FAILED"])), page=1,
                                size=100, top_level=False)
    assert failed.total == len(range(0, PLAIN, 7)) and set(failed.runs["status"]) == {"FAILED"}


def test_filter_choices_come_from_every_run(many):
    choices = listings.filter_choices(many["experiment"])
    assert choices["params.model"] == ["cnn", "mlp"] and choices["tags.owner"] == ["oldest"]
    assert not any(k.startswith(("tags.runboard.", "tags.mlflow.")) for k in choices)


# ----- the page ---------------------------------------------------------------------------------------------

def caption(at) -> str:
    return next(c.value for c in at.caption if c.value.startswith("Runs "))


def test_the_page_counts_pages_and_reaches_the_oldest_run(many):
    at = open_page(experiment=EXPERIMENT)
    assert not at.exception and not at.error
    assert len(at.dataframe[0].value) == 100
    assert caption(at).startswith(f"Runs 1–100 of {PLAIN + 1} · page 1 of 3")
    assert f"{EXPERIMENT} ({PLAIN + 4} runs)" in at.selectbox(key="experiment").options  # counted in SQL
    at.number_input(key="runs_page").set_value(3).run()
    names_shown = set(at.dataframe[0].value["name"])
    assert "many-000" in names_shown and len(names_shown) == 31
    assert caption(at).startswith(f"Runs 201–{PLAIN + 1} of {PLAIN + 1} · page 3 of 3")


def test_a_link_opens_the_same_page_and_a_new_filter_starts_at_page_one(many):
    at = open_page(experiment=EXPERIMENT, runs_page="3", page_size="100")
    assert "many-000" in set(at.dataframe[0].value["name"])
    at.multiselect(key="filter_status").set_value(["FAILED"]).run()
    assert at.number_input(key="runs_page").value == 1
    failed = len(range(0, PLAIN, 7))
    assert set(at.dataframe[0].value["status"].map(lambda cell: cell[0])) == {"✗ FAILED"}
    assert caption(at).startswith(f"Runs 1–{failed} of {failed} · page 1 of 1")


def test_a_link_past_the_last_page_opens_the_last_page(many):
    at = open_page(experiment=EXPERIMENT, runs_page="9")
    assert not at.exception and not at.error and at.number_input(key="runs_page").value == 3
    assert caption(at).startswith(f"Runs 201–{PLAIN + 1} of {PLAIN + 1} · page 3 of 3")


def test_a_tag_on_the_oldest_run_is_offered_from_page_one_and_finds_it(many):
    at = open_page(experiment=EXPERIMENT)
    assert "owner=oldest" in at.multiselect(key="filter_tag").options
    at.multiselect(key="filter_tag").set_value(["owner=oldest"]).run()
    assert list(at.dataframe[0].value["name"]) == ["many-000"]


def test_sorting_by_a_score_orders_every_page_and_a_computed_column_says_it_sorts_one(many):
    at = open_page(experiment=EXPERIMENT, sort="test acc", order="ascending", page_size="250")
    table = at.dataframe[0].value
    assert table["name"].iloc[0] == f"many-{PLAIN - 1:03d}" and len(table) == PLAIN + 1
    at = open_page(experiment=EXPERIMENT, sort="best val acc")
    assert "best val acc is sorted within this page" in texts(at.caption)
    at = open_page(experiment=EXPERIMENT, sort="model")
    assert "model sorts as text across pages" in texts(at.caption)


def test_larger_pages_hold_more_rows(many):
    at = open_page(experiment=EXPERIMENT)
    at.selectbox(key="page_size").set_value(250).run()
    assert len(at.dataframe[0].value) == PLAIN + 1 and caption(at).startswith(f"Runs 1–{PLAIN + 1} of {PLAIN + 1}")


# ----- the other pages read what they need in SQL, not the newest runs of a capped listing --------------------

def test_a_sweeps_runs_are_found_by_their_tag(many):
    found = listings.sweep_runs(many["experiment"], many["parent"])
    assert set(found["run_id"]) == set(many["children"])


def test_pickers_offer_the_newest_runs_and_a_link_reaches_an_older_one(many, monkeypatch):
    """With pickers of 5 runs, the Register form and a run's Compare evaluation still take a link's oldest run."""
    import dashboard.store

    monkeypatch.setattr(dashboard.store, "PICKER_RUNS", 5)
    oldest, newest = many["ids"][1], many["ids"][-1]  # many-001 (many-000 FAILED); many-229
    at = open_page("registry", register=oldest)
    assert not at.exception and at.selectbox(key="register_run").value == oldest
    offered = set(at.selectbox(key="register_run").options)
    assert len(offered) < 20  # the newest and the best finished runs, and the link's: not all 230
    at = open_page("registry")
    assert at.selectbox(key="register_run").value is not None  # starts at the best finished run offered
    at = open_page("run_detail", run=newest, vs=oldest)
    assert not at.exception
    assert "which is not another trained run" not in texts(at.warning)
    at = open_page("run_detail", run=newest, vs="f" * 32)
    assert "which is not another trained run" in texts(at.warning)
