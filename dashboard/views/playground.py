"""Playground page: try a registered model (or two, side by side) on uploaded or sample images.

Images are prepared by pipeline.serving.predict from the preprocessing logged with the model, never
by page code. Models are cached per version (store.predictor), so only the first prediction loads.
URL: `?model=NAME&ref=VERSION_OR_ALIAS` picks the model (default: the newest @champion).
"""
from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from dashboard import charts, formatting, input_check, model_choice, predictions, samples, store, ui
from dashboard.predictions import enlarged
from pipeline import names, settings
from pipeline.imaging import images
from pipeline.serving import predict, registry

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif"]
MAX_TOP = 10       # the most classes the top-k chart offers


# ---------------------------------------------------------------------------------------------
# inputs

def sample_picker(side: int, dataset: str, uploaded: bool = False) -> None:
    st.session_state.setdefault("pg_samples", {})
    chosen = st.session_state["pg_samples"]
    head, more, clear = st.columns([5, 1.5, 1], vertical_alignment="bottom")
    round_ = st.session_state.setdefault("pg_round", 0)
    if more.button("Other samples", key="pg_more", help="the next test image of each class"):
        round_ = st.session_state["pg_round"] = round_ + 1
    if clear.button("Clear", key="pg_clear", disabled=not (chosen or uploaded),
                    help="unselect every sample and remove the uploads"):
        chosen.clear()
        st.session_state["pg_upload_round"] = st.session_state.get("pg_upload_round", 0) + 1  # a new, empty uploader
        st.rerun()
    found, note = samples.for_model(dataset, side, round_)
    head.markdown(f"**…or click sample images** from {note}")
    for col, (name, png) in zip(st.columns(max(1, len(found))), found):
        col.image(enlarged(Image.open(io.BytesIO(png))), width=56)
        picked = name in chosen
        if col.button("✓" if picked else "Use", key=f"pg_sample_{name}", type="primary" if picked else "secondary"):
            if picked:
                chosen.pop(name)
            else:
                chosen[name] = png
            st.rerun()


# ---------------------------------------------------------------------------------------------
# models

def pick_model(versions: list, slot: str, default: tuple[str, str]):
    """A model name and version-or-alias selector; returns (ModelVersionInfo, chosen ref)."""
    model_names = sorted({v.name for v in versions if v.status == "READY"})
    index = model_names.index(default[0]) if default[0] in model_names else 0
    name = st.selectbox("Model", model_names, index=index, key=f"pg_model_{slot}")
    options = model_choice.ref_options(versions, name)
    wanted = model_choice.normal_ref(default[1]) if name == default[0] else None
    newest = max((o for o in options if o.startswith("v")), key=lambda o: int(o[1:]))
    fallback = f"@{registry.CHAMPION}" if f"@{registry.CHAMPION}" in options else newest
    if wanted and wanted not in options:
        st.warning(f"{name} has no {wanted.replace('v', 'version ', 1) if wanted[0] == 'v' else 'alias ' + wanted}"
                   f" (any more); showing {fallback}.")
    index = options.index(wanted if wanted in options else fallback)

    def label(option: str) -> str:
        v = model_choice.resolve(versions, name, option)
        where = f" → v{v.version}" if option.startswith("@") else ""
        acc = f" · test acc {formatting.percent(v.test_accuracy)}" if v.test_accuracy is not None else ""
        return f"{option}{where} · {v.architecture or '?'}{acc}"

    ref = st.selectbox("Version or alias", options, index=index, format_func=label, key=f"pg_ref_{slot}_{name}")
    return model_choice.resolve(versions, name, ref), ref


def load(version):
    """The cached model of `version`, or None after telling the user why it cannot be used."""
    started = time.perf_counter()
    try:
        with st.spinner(f"Loading {version.name} v{version.version}…"):
            model = store.predictor(version)
    except predict.ModelError as e:
        store.forget_model_versions()  # the listing was stale: the next rerun offers what exists
        st.error(f"{e}. The list of versions has been refreshed: pick another one.")
        return None
    except store.ERRORS as e:
        st.error(f"The model cannot be loaded: {e}")
        return None
    seconds = time.perf_counter() - started
    if seconds > 0.2:
        st.caption(f"Loaded {model.ref.label} in {seconds:.1f} s; cached for the next predictions.")
    return model


def load_chosen(version, slot: str):
    """The original of `version`, or one of its exported variants (ONNX, int8 in onnxruntime) once it has any."""
    try:
        rows = [r for r in store.model_variants(version) if r.get("run_id")]
    except store.ERRORS:
        rows = []
    if not rows:
        return load(version)
    picked = st.radio("Variant", [names.ORIGINAL] + [r["variant"] for r in rows], horizontal=True,
                      key=f"pg_variant_{slot}_{version.name}_{version.version}",
                      help="the original (PyTorch) or a variant exported on the Registry page (onnxruntime)")
    if picked == names.ORIGINAL:
        return load(version)
    try:
        with st.spinner(f"Loading the {picked} variant of {version.name} v{version.version}…"):
            return store.variant_predictor(next(r["run_id"] for r in rows if r["variant"] == picked))
    except (predict.ModelError, *store.ERRORS) as e:
        store.forget_model_variants()
        st.error(f"The {picked} variant cannot be loaded: {e}. Showing the original instead.")
        return load(version)


# ---------------------------------------------------------------------------------------------
# results

def predicted(model, items: list, top: int, calibrated: bool = False):
    started = time.perf_counter()
    results = predict.predict_many(model, items, top, max_bytes=settings.upload_limit_mb() * 2**20,
                                   calibrated=calibrated)
    return results, (time.perf_counter() - started) * 1000 / max(1, len(items))


def show_one(slot: str, model, result, ms: float) -> None:
    p = result.prediction
    st.markdown(f"**{model.ref.label}**")
    st.caption(f"Probabilities: {predict.probability_kind(model.preprocessing, p.calibrated)}")
    st.metric("Prediction", p.label, f"{formatting.percent(p.probability)} confident", delta_color="off", delta_arrow="off",
              help="the most likely class; the chart shows the top classes with their probabilities")
    st.plotly_chart(charts.top_classes_figure(pd.DataFrame(p.top, columns=["label", "probability"])),
                    key=f"pg_chart_{slot}", config={"displayModeBar": False})
    st.caption(f"Latency {ms:.1f} ms per image (decode, prepare and forward pass; model cached)")


def show_batch(runs: list, unlike: list, compare: bool) -> None:
    table = predictions.results_frame(runs[0][1], runs[1][1] if compare else None, *unlike)
    if compare:
        agreeing, compared, left_out = predictions.agreement(table)
        st.markdown(f"**The models agree on {agreeing} of {compared} images**"
                    + (f" ({left_out} more left out: unlike the training data, see *warning*)" if left_out else "")
                    + "; disagreements are highlighted in red, images that could not be used in amber.")
    bar = st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent", step=formatting.PERCENT_STEP)
    st.dataframe(table.style.apply(predictions.disagreement_styles, axis=1), hide_index=True, placeholder=formatting.MISSING,
                 column_config={c: bar for c in ("confidence", "B confidence") if c in table})
    csv = predictions.to_csv(table, runs[0][0].ref.load_uri, runs[1][0].ref.load_uri if compare else None)
    st.download_button("Download CSV", csv, file_name="predictions.csv", mime="text/csv", key="pg_csv",
                       help="every image with its prediction, confidence and top classes")


PREDICTED = "the predicted class"


def explained_by(model, version):
    """The model whose maps explain `model`: itself, or for an exported variant (an ONNX graph, no gradients
    to follow) the registered version it was exported from. Raises predict.ModelError when there is none."""
    if model.module is not None or not model.ref.variant:
        return model
    return store.predictor(version)


def show_explanations(runs: list, versions: list, pick: int) -> None:
    """Heat maps of what drove each model's answer on the detailed image, over the original and the input."""
    st.subheader("What drove the answer")
    choice = st.selectbox("Explain", [PREDICTED, *runs[0][0].classes], key="pg_explain_class",
                          help="the class whose evidence is drawn: red pixels raised its score; blue ones lowered "
                               "it, where the method can show that (integrated gradients; Grad-CAM maps are ≥ 0)")
    columns = st.columns(2 * len(runs))
    for i, ((model, results, _), version) in enumerate(zip(runs, versions)):
        result = results[pick]
        try:
            source = explained_by(model, version)
            explainer = store.explainer(source)
        except predict.ModelError as e:
            columns[2 * i].info(str(e))  # the message names the model already
            continue
        title = model.ref.label if source is model else f"{source.ref.label}, source of {model.ref.variant}"
        started = time.perf_counter()
        target = choice if choice in model.classes else result.prediction.label  # known: saves a forward pass
        [e] = explainer.explain(result.prepared[None], target)
        ms = (time.perf_counter() - started) * 1000
        pre = model.preprocessing  # ImageNet-style models saw only the centre: lay the map over that part
        original = images.input_region(result.image, pre.image_size, pre.crop).copy()
        original.thumbnail((256, 256))  # the map has the input's few cells: more pixels add nothing
        columns[2 * i].plotly_chart(charts.explanation_figure(np.asarray(original), e.heat, title,
                                                              smooth=True, signed=e.signed),
                                    key=f"pg_explain_original_{i}", config={"displayModeBar": False})
        columns[2 * i + 1].plotly_chart(charts.explanation_figure(result.prepared.transpose(1, 2, 0), e.heat,
                                                                  "model input", signed=e.signed, scale=True),
                                        key=f"pg_explain_input_{i}", config={"displayModeBar": False})
        other = f" ({model.ref.label} has no class {choice})" if choice not in (PREDICTED, *model.classes) else ""
        via = "" if source is model else (f"{model.ref.label} is an exported ONNX graph, explained through its "
                                          f"source model {source.ref.label}: ")
        columns[2 * i].caption(f"{via}{e.method} for class **{e.label}**{other} · {ms:.0f} ms"
                               + ("" if e.signed else " · its maps are ≥ 0: they show what raised the score, "
                                  "not what lowered it")
                               + (" · no pixel spoke for this class: the map is all zero" if e.empty else ""))


# ---------------------------------------------------------------------------------------------
# page

def choose_models(all_versions: list, compare: bool, slots) -> list:
    """The version(s) to try: from the URL (?model=&ref=), else the newest @champion; the URL follows."""
    params = st.query_params
    default = registry.default_choice(all_versions)
    if params.get("model"):
        if any(v.name == params["model"] for v in all_versions):
            default = (params["model"], params.get("ref") or default[1])
        else:
            st.warning(f"No registered model named {params['model']!r}; showing {default[0]} instead.")
    with slots[0]:
        version_a, ref_a = pick_model(all_versions, "a", default)
    if (params.get("model"), params.get("ref")) != (version_a.name, model_choice.plain_ref(ref_a)):
        params.update(model=version_a.name, ref=model_choice.plain_ref(ref_a))
    chosen = [version_a]
    if compare:
        with slots[1]:
            version_b, _ = pick_model(all_versions, "b", model_choice.default_b(all_versions, version_a))
        chosen.append(version_b)
    return chosen


def upload_key() -> str:
    """The uploader's key: Clear moves it on, which is how a file_uploader is emptied."""
    return f"pg_upload_{st.session_state.get('pg_upload_round', 0)}"


def inputs(models: list) -> list[tuple[str, bytes]]:
    """Uploaded files and picked samples, as (name, bytes)."""
    limit = settings.upload_limit_mb()
    if st.get_option("server.maxUploadSize") < limit:
        st.warning(f"The server accepts uploads up to {st.get_option('server.maxUploadSize')} MB, below "
                   f"RUNBOARD_UPLOAD_MB={limit}: start streamlit with --server.maxUploadSize {limit}.")
    uploads = st.file_uploader("Upload images", type=IMAGE_TYPES, max_upload_size=limit,  # the box names the limit
                               accept_multiple_files=True, key=upload_key())
    pre = models[0].preprocessing
    side = pre.image_size[0] if pre.dataset == "digits" and pre.image_size[0] == pre.image_size[1] != 8 else 0
    sample_picker(side, pre.dataset, bool(uploads))
    return [(f.name, f.getvalue()) for f in uploads or []] + list(st.session_state["pg_samples"].items())


def show_results(models: list, versions: list, items: list, compare: bool) -> None:
    pre = models[0].preprocessing
    top = st.slider("Top classes shown", 1, min(MAX_TOP, len(pre.classes)), min(3, len(pre.classes)), key="pg_top")
    calibrated = st.toggle("Calibrated probabilities", key="pg_calibrated",
                           help="divide the logits by the temperature each model carries (fitted on its validation "
                                "split), so that 90 % means right about 90 % of the time; models trained before "
                                "calibration have none and show raw probabilities")
    runs = [(m, *predicted(m, items, top, calibrated)) for m in models]
    unlike = [[input_check.reasons_for(r, m.preprocessing) for r in results] for m, results, _ in runs]
    failed = [r.error for r in runs[0][1] if r.error]
    if failed:
        st.error(f"{len(failed)} of {len(items)} file(s) could not be used:\n\n" + "\n".join(f"- {e}" for e in failed))
    usable = [i for i, r in enumerate(runs[0][1]) if r.prediction]
    if not usable:
        return
    pick = usable[0]
    if len(usable) > 1:
        pick = st.selectbox("Image shown in detail", usable, format_func=lambda i: items[i][0], key="pg_detail")
    seen = runs[0][1][pick]
    labels = [r[1][pick].prediction.label for r in runs]
    if compare and labels[0] != labels[1]:
        st.warning(f"The models disagree on {items[pick][0]}: {labels[0]} vs {labels[1]}.", icon="⚠️")
    columns = st.columns([1, 1] + [2] * len(runs))
    columns[0].image(enlarged(seen.image), caption=f"original · {seen.image.width}×{seen.image.height}")
    prepared = [r[1][pick].prepared for r in runs]
    columns[1].image(enlarged(prepared[0]), caption=f"model input · {prepared[0].shape[2]}×{prepared[0].shape[1]}")
    if compare and prepared[1].shape != prepared[0].shape:
        columns[1].image(enlarged(prepared[1]), caption=f"B's input · {prepared[1].shape[2]}×{prepared[1].shape[1]}")
    for i, (column, (model, results, ms)) in enumerate(zip(columns[2:], runs)):
        with column:
            show_one("ab"[i], model, results[pick], ms)
            if reasons := unlike[i][pick]:
                st.warning("**Unlike what this model was trained on**, so trust this answer less: "
                           + input_check.sentence(reasons), icon=":material/warning:")
    show_explanations(runs, versions, pick)
    if len(items) > 1 or compare:
        st.subheader("All images")
        show_batch(runs, unlike, compare)


@ui.guarded
def page() -> None:
    st.title("Playground")
    all_versions = store.model_versions(st.query_params.get("model"), st.query_params.get("ref"))
    if not any(v.status == "READY" for v in all_versions):
        st.info("No registered model to try yet. Register a finished run's model on the [Registry](registry) page, "
                "or train one with `python -m pipeline train --dataset digits --model cnn --register digits-cnn`; "
                "then set its `champion` alias to make it the default here.")
        return
    compare = st.toggle("Compare two models", key="pg_compare")
    slots = st.columns(2) if compare else [st.container()]
    models, versions = [], choose_models(all_versions, compare, slots)
    for slot, version in zip(slots, versions):
        with slot:
            model = load_chosen(version, "ab"[len(models)])
            if model is not None:
                st.caption(model_choice.describe(model.preprocessing, version))
            models.append(model)
    if any(m is None for m in models):
        return
    if compare and models[0].ref.load_uri == models[1].ref.load_uri:  # a variant of the same version differs
        st.info(f"Both sides are {models[0].ref.label}: pick another version, model or variant to compare.")
    items = inputs(models)
    if not items:
        st.info("Upload images or click a sample to see predictions.")
        return
    show_results(models, versions, items, compare)


if __name__ == "__main__":
    page()
