"""Can I trust this model? The Evaluation tab's calibration and curves, and the paired comparison of two runs.

Everything is drawn from the run's kept `evaluation/predictions.npz` and `calibration.json`: a run
trained before runs kept them says so in place. Curves are one vs rest, by scikit-learn.
"""
from __future__ import annotations

import dataclasses

import pandas as pd
import streamlit as st

from dashboard import charts, formatting, samples, store
from pipeline import names
from pipeline.serving import paired
from pipeline.training import curves

MAX_DEFAULT_CLASSES = 10  # classes drawn before the user picks: more lines than this are unreadable


@st.cache_data(max_entries=16, show_spinner=False)
def class_curves(run_id: str, version: int) -> dict:
    kept = store.kept_predictions(run_id, version)
    return curves.per_class(kept["probabilities"], kept["labels"], kept["classes"] or
                            [str(c) for c in range(kept["probabilities"].shape[1])])


def no_predictions(run: dict) -> bool:
    """Say in place why there are no trust figures; True when there are none."""
    try:
        store.kept_predictions(run["run_id"], run["last_update"])
        return False
    except store.ArtifactNotFoundError:
        st.info(f"No calibration or curves: this run kept no {names.PREDICTIONS_NPZ} (runs trained before "
                "predictions were kept, or not finished).", icon=":material/query_stats:")
        return True


def calibration(run: dict, key: str = "trust") -> None:
    """The reliability diagram with ECE, MCE and the fitted temperature."""
    report = store.calibration(run["run_id"], run["last_update"])
    cells = [("ECE", formatting.score(report["ece"]), "expected calibration error: the gap between confidence and "
              "accuracy, averaged over 15 equal-width confidence bins weighted by their images"),
             ("MCE", formatting.score(report["mce"]), "the largest gap of any bin"),
             ("temperature", formatting.number(report["temperature"]), "fitted on the validation split by NLL: "
              "above 1 softens overconfident probabilities, below 1 sharpens underconfident ones"),
             ("ECE after temperature", formatting.score(report["ece_after_temperature"]), "on the test split")]
    for column, (label, value, why) in zip(st.columns(len(cells)), cells):
        column.metric(label, value, help=why)
    after = st.toggle("Show after temperature scaling", key=f"{key}_after")
    st.plotly_chart(charts.reliability_figure(report["bins"], f"Reliability diagram · {run['run_name']}",
                                              report["bins_after_temperature"] if after else None),
                    key=f"{key}_reliability")
    st.caption("Bars: accuracy of the test images in each confidence bin (n = images); red marks: their mean "
               "confidence. A bar below its mark is overconfidence; on the dashed diagonal, 90 % means right 90 % "
               "of the time.")


def class_curves_section(run: dict, key: str = "trust") -> None:
    """Per-class precision-recall and ROC curves, one class against all the others."""
    found = class_curves(run["run_id"], run["last_update"])
    if not found:
        st.info("No curves: the test split has a single class.")
        return
    picked = st.multiselect("Classes", list(found), default=list(found)[:MAX_DEFAULT_CLASSES], key=f"{key}_classes")
    chosen = {c: found[c] for c in picked}
    left, right = st.columns(2)
    left.plotly_chart(charts.class_curves_figure(chosen, "pr"), key=f"{key}_pr")
    right.plotly_chart(charts.class_curves_figure(chosen, "roc"), key=f"{key}_roc")
    means = curves.macro(found)
    st.caption(f"One vs rest: each class's probability scores it against all the others. Macro AP "
               f"{formatting.score(means['ap'])}, macro AUC {formatting.score(means['auc'])} over {len(found)} classes.")
    st.dataframe(pd.DataFrame([{"class": c, "AP": v["ap"], "AUC": v["auc"], "test images": v["positives"]}
                               for c, v in found.items()]), hide_index=True, key=f"{key}_scores",
                 column_config={k: formatting.score_column() for k in ("AP", "AUC")})


def trust(run: dict) -> None:
    """The Evaluation tab's part from the kept predictions."""
    st.subheader("Calibration")
    if no_predictions(run):
        return
    try:
        calibration(run)
    except store.ArtifactNotFoundError as e:
        st.info(f"No calibration: {e}.")
    st.subheader("Precision-recall and ROC")
    class_curves_section(run)
    st.subheader("Embedding map")
    embedding_map(run)


def embedding_map(run: dict, key: str = "trust") -> None:
    """The test split's penultimate features in 2-D; the points selected (box or lasso) are shown below."""
    try:
        found = store.embedding(run["run_id"], run["last_update"])
    except store.ArtifactNotFoundError:
        st.info(f"No embedding map: this run kept no {names.EMBEDDING_NPZ}.")
        return
    kept = store.kept_predictions(run["run_id"], run["last_update"])
    classes = kept["classes"] or [str(c) for c in range(kept["probabilities"].shape[1])]
    event = st.plotly_chart(charts.embedding_figure(found["xy"], found["labels"], found["predicted"], classes),
                            key=f"{key}_embedding", on_select="rerun", selection_mode=("box", "lasso", "points"))
    st.caption(f"The test images as the classifier's last layer sees them, brought to 2-D by "
               f"{str(found.get('method', 'pca')).upper()}; colour: true class, crosses: mistakes. Select points "
               "(box or lasso) to see those images.")
    rows = sorted({int(p["customdata"]) if not isinstance(p["customdata"], list) else int(p["customdata"][0])
                   for p in (event.selection.points if event else []) if "customdata" in p})
    if rows:
        show_images(run, found, classes, rows)


def show_images(run: dict, found: dict, classes: list[str], rows: list[int], shown: int = 32) -> None:
    ids = found["ids"][rows]
    pictures = samples.test_images(run["params"].get("dataset", ""), list(ids), shown)
    st.markdown(f"**{len(rows)} selected**" + (f" (the first {shown} shown)" if len(rows) > shown else ""))
    columns = st.columns(8)
    for n, (row, image_id, picture) in enumerate(zip(rows[:shown], ids, pictures)):
        true, said = classes[found["labels"][row]], classes[found["predicted"][row]]
        caption = f"true {true} · predicted {said}" + (" ✗" if true != said else "")
        with columns[n % 8]:
            if picture is not None:
                st.image(picture, caption=caption, width=64)
            else:
                st.caption(f"{image_id}: {caption}")


def paired_section(run: dict, other: dict) -> None:
    """Is this run really better than the other? The paired test, both reliability diagrams, and the images
    only one of them got right."""
    with st.container(key="paired_comparison"):  # one block: the browser test photographs it for the docs
        _paired(run, other)


def _paired(run: dict, other: dict) -> None:
    st.subheader("Paired comparison on the same test images")
    if no_predictions(run) or no_predictions(other):
        return
    a, b = (_side(r) for r in (other, run))
    try:
        result = compared(other["run_id"], other["last_update"], run["run_id"], run["last_update"])
    except paired.CompareError as e:
        st.warning(f"No paired comparison: {e}.", icon=":material/compare_arrows:")
        return
    (st.success if result.significant else st.info)(paired.sentence(result))
    table = pd.DataFrame({f"{b.label} right": [result.both_right, result.only_b],
                          f"{b.label} wrong": [result.only_a, result.both_wrong]},
                         index=[f"{a.label} right", f"{a.label} wrong"])
    st.dataframe(table, key="pair_table")
    st.caption(f"Exact McNemar p = {result.p_value:.4g}: two-sided binomial test on the {result.only_a + result.only_b} "
               f"images exactly one of them got right; 95 % interval of the accuracy difference from "
               f"{result.resamples:,} paired bootstrap resamples.")
    for column, r in zip(st.columns(2), (other, run)):
        with column:
            report = store.calibration(r["run_id"], r["last_update"])
            st.plotly_chart(charts.reliability_figure(report["bins"], f"{r['run_name']} · ECE {report['ece']:.3f}"),
                            key=f"pair_reliability_{r['run_id']}")
    dataset = run["params"].get("dataset", "")
    for title, ids, key in ((f"Only {a.label} right", result.only_a_ids, "only_a"),
                            (f"Only {b.label} right", result.only_b_ids, "only_b")):
        gallery(title, ids, dataset, a, b, key)


@st.cache_data(max_entries=16, show_spinner="Bootstrapping the paired difference…")
def compared(a_id: str, a_version: int, b_id: str, b_version: int) -> paired.Comparison:
    """The paired test of run b against run a (10,000 resamples: drawn once per pair of runs, not per rerun)."""
    return paired.compare(_side(store.run(a_id)), _side(store.run(b_id)))


def _side(run: dict) -> paired.Side:
    kept = store.kept_predictions(run["run_id"], run["last_update"])
    return paired.Side(f"{run['run_name']}", run["run_id"], kept["ids"], kept["labels"], kept["predicted"],
                       kept["classes"], frozenset())


def gallery(title: str, ids, dataset: str, a: paired.Side, b: paired.Side, key: str, shown: int = 24) -> None:
    """The images of `ids` with their true class and each side's answer."""
    st.markdown(f"**{title}** ({len(ids)} images; A = {a.label}, B = {b.label})")
    if not len(ids):
        st.caption("none")
        return
    pictures = samples.test_images(dataset, list(ids), shown)
    where_a = {i: n for n, i in enumerate(a.ids.tolist())}
    where_b = {i: n for n, i in enumerate(b.ids.tolist())}
    classes = a.classes or [str(c) for c in range(int(max(a.labels.max(), a.predicted.max())) + 1)]
    columns = st.columns(8)
    for n, (image_id, picture) in enumerate(zip(list(ids)[:shown], pictures)):
        i, j = where_a[image_id], where_b[image_id]
        caption = f"true {classes[a.labels[i]]} · A {classes[a.predicted[i]]} · B {classes[b.predicted[j]]}"
        with columns[n % 8]:
            if picture is not None:
                st.image(picture, caption=caption, width=64)
            else:
                st.caption(f"{image_id}: {caption}")
    if len(ids) > shown:
        st.caption(f"the first {shown} of {len(ids)}")


def alias_move(current, target) -> None:
    """Before an alias moves: is the new version really better than the one it leaves, on the same images?"""
    if not (current.run_id and target.run_id):
        return
    try:
        old, new = store.run(current.run_id), store.run(target.run_id)
        result = compared(old["run_id"], old["last_update"], new["run_id"], new["last_update"])
    except (paired.CompareError, store.ArtifactNotFoundError, store.RunNotFoundError) as e:
        st.caption(f"No paired comparison of v{target.version} with v{current.version}: "
                   + (str(e) if isinstance(e, paired.CompareError) else f"{e} (trained before predictions were kept?)"))
        return
    result = dataclasses.replace(result, a=f"v{current.version}", b=f"v{target.version}")
    # a warning for a lower score follows from the caller: this line informs, it does not block
    (st.success if result.significant and result.difference > 0 else st.info)(paired.sentence(result),
                                                                                icon=":material/balance:")
