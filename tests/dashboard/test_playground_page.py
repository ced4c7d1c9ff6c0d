"""Playground page under streamlit.testing AppTest, against the session's real store and models.

Streamlit 1.67's AppTest drives st.file_uploader directly (`set_value` with (name, bytes, mime)
tuples), so uploads of good and bad bytes go through the page itself; sample images are clicked.
Uses tests/dashboard/conftest.py (empty_store, unreachable_store). Run:
.venv/bin/python -m pytest tests/dashboard/test_playground_page.py -q
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard import store
from tests.dashboard.conftest import figures
from pipeline.serving import predict, registry

ROOT = Path(__file__).resolve().parents[2]
PAGE = str(ROOT / "dashboard" / "views" / "playground.py")
NAME = "playground-tests"


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bomb() -> bytes:
    """A valid PNG header claiming 10000 x 10000 pixels, with almost no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10_000, 10_000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def noise_png(seed: int, side: int = 24) -> bytes:
    return encoded(Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)), "PNG")


@pytest.fixture(scope="module")
def models(trained_runs) -> str:
    """NAME: v1 the cnn run (@champion), v2 the mlp run (@challenger)."""
    registry.register_run(trained_runs[0], NAME)
    registry.register_run(trained_runs[2], NAME)
    registry.set_alias(NAME, registry.CHAMPION, 1)
    registry.set_alias(NAME, registry.CHALLENGER, 2)
    return NAME


@pytest.fixture(autouse=True)
def fresh_listing():
    store.forget_model_versions()  # what other tests registered shows at once
    yield


def page(model: str | None = None, ref: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    if model:
        at.query_params.update(model=model, **({"ref": ref} if ref else {}))
    return at.run()


def assert_no_traceback(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def errors(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


def test_a_link_to_a_model_registered_after_the_listing_opens_it(models, trained_runs):
    """The registry listing is cached for seconds; a link to a model or version registered since must open it."""
    client = MlflowClient()
    assert page(NAME, "2").selectbox[1].value == "v2"  # the listing is now cached
    registry.register_run(trained_runs[1], "linked-at-once")
    version = registry.register_run(trained_runs[1], NAME).version
    try:
        for name, ref, shown in (("linked-at-once", "1", "v1"), (NAME, str(version), f"v{version}")):
            at = page(name, ref)
            assert_no_traceback(at)
            assert not at.warning, [w.value for w in at.warning]
            assert (at.selectbox[0].value, at.selectbox[1].value) == (name, shown)
    finally:
        client.delete_registered_model("linked-at-once")
        client.delete_model_version(NAME, str(version))


def test_default_is_the_newest_champion_and_the_url_follows(models):
    at = page()
    assert_no_traceback(at)
    name, ref = registry.default_choice(registry.list_versions())
    assert ref == registry.CHAMPION
    assert (at.selectbox[0].value, at.selectbox[1].value) == (name, "@champion")
    assert (at.query_params["model"], at.query_params["ref"]) == (name, "champion")
    assert "Upload images or click a sample" in at.info[0].value


def test_the_url_picks_a_version_and_the_model_input_is_described(models):
    at = page(NAME, "2")
    assert_no_traceback(at)
    assert at.selectbox[1].value == "v2"
    assert any("mlp on digits · input grayscale 8×8" in c.value for c in at.caption)
    at = page("no-such-model")
    assert "No registered model named 'no-such-model'" in at.warning[0].value
    at = page(NAME, "nobody")
    assert f"{NAME} has no alias @nobody (any more); showing @champion." in at.warning[0].value
    assert at.selectbox[1].value == "@champion"


def test_a_sample_click_predicts_what_the_library_predicts(models):
    at = page(NAME, "champion")
    first = next(b for b in at.button if b.key.startswith("pg_sample_"))
    name = first.key.removeprefix("pg_sample_")
    at = first.click().run()
    assert_no_traceback(at)
    png = at.session_state["pg_samples"][name]
    [expected] = predict.load(f"models:/{NAME}/1").predict([png])
    [shown] = [m for m in at.metric if m.label == "Prediction"]
    assert shown.value == expected.label and f"{expected.probability:.1%}" in shown.delta
    captions = [c for image in at.image for c in image.captions]
    assert any(c.startswith("original · 8×8") for c in captions) and any(c.startswith("model input · 8×8") for c in captions)
    assert any(c.value.startswith("Latency ") and "ms per image" in c.value for c in at.caption)
    assert at.get("plotly_chart")  # the top-k bar chart


def test_the_detailed_image_is_explained_for_the_predicted_or_a_picked_class(models):
    at = page(NAME, "champion")
    at = next(b for b in at.button if b.key.startswith("pg_sample_")).click().run()
    assert_no_traceback(at)
    maps = [f for f in figures(at) if any(t.get("type") == "heatmap" for t in f["data"])]
    assert [f["layout"]["title"]["text"] for f in maps] == [f"{NAME} v1", "model input"]
    [label] = [m.value for m in at.metric if m.label == "Prediction"]
    assert any(c.value.startswith(f"Grad-CAM for class **{label}**") for c in at.caption)
    other = next(c for c in "0123456789" if c != label)
    at.selectbox(key="pg_explain_class").set_value(other)
    at.toggle(key="pg_compare").set_value(True)
    at = at.run()
    assert_no_traceback(at)
    assert len([f for f in figures(at) if any(t.get("type") == "heatmap" for t in f["data"])]) == 4
    shown = " | ".join(c.value for c in at.caption)
    assert f"Grad-CAM for class **{other}**" in shown and f"integrated gradients for class **{other}**" in shown


def test_uploads_of_every_kind_and_bad_bytes_keep_the_page_working(models, monkeypatch):
    monkeypatch.setenv("RUNBOARD_UPLOAD_MB", "1")
    red = Image.new("RGB", (20, 20), (255, 0, 0))
    first, second = Image.new("P", (8, 8), 0), Image.new("P", (8, 8), 1)
    for frame in (first, second):
        frame.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    good = {
        "red.png": encoded(red, "PNG"), "red.jpg": encoded(red, "JPEG"), "red.webp": encoded(red, "WEBP"),
        "red.bmp": encoded(red, "BMP"), "anim.gif": encoded(first, "GIF", save_all=True, append_images=[second]),
        "deep.png": encoded(Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)), "PNG"),
        "cmyk.jpg": encoded(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"),
        "alpha.png": encoded(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), "PNG"),
        "palette.png": encoded(red.convert("P"), "PNG"),
    }
    whole = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")
    bad = {"notes.png": (b"these are my notes", "not an image"), "zero.png": (b"", "empty file"),
           "cut.png": (whole[: len(whole) // 2], "damaged image"), "bomb.png": (bomb(), "over the limit"),
           "huge.png": (noise_png(1, 1100), "over the upload limit of 1 MB")}
    at = page(NAME, "1")
    files = [(n, b, "image/png") for n, b in good.items()] + [(n, b, "image/png") for n, (b, _) in bad.items()]
    at = at.file_uploader(key="pg_upload_0").set_value(files).run()
    assert_no_traceback(at)
    shown = errors(at)
    assert f"{len(bad)} of {len(files)} file(s) could not be used" in shown
    for name, (_, reason) in bad.items():
        assert f"{name}: " in shown and reason in shown, name
    table = at.dataframe[0].value
    assert len(table) == len(files) and table["error"].astype(bool).sum() == len(bad)
    expected = predict.load(f"models:/{NAME}/1").predict(list(good.values()))
    assert table["prediction"].tolist()[: len(good)] == [p.label for p in expected]
    assert at.download_button[0].label == "Download CSV"
    at = at.file_uploader(key="pg_upload_0").set_value([("red.png", good["red.png"], "image/png")]).run()
    assert_no_traceback(at)
    assert not errors(at) and [m.label for m in at.metric] == ["Prediction"]  # recovered: one good image


def test_compare_mode_shows_both_models_and_highlights_disagreements(models):
    champion, challenger = predict.load(f"models:/{NAME}/1"), predict.load(f"models:/{NAME}/2")
    candidates = [(f"noise-{seed}.png", noise_png(seed)) for seed in range(40)]
    agree = [a.label == b.label for a, b in zip(champion.predict([c for _, c in candidates]),
                                                  challenger.predict([c for _, c in candidates]))]
    if all(agree):
        pytest.skip("the two tiny models happen to agree on every noise image")
    differ = agree.index(False)
    chosen = [candidates[differ]] + ([candidates[agree.index(True)]] if True in agree else [])
    at = page(NAME, "champion")
    at.toggle(key="pg_compare").set_value(True)
    at = at.file_uploader(key="pg_upload_0").set_value([(n, b, "image/png") for n, b in chosen]).run()
    assert_no_traceback(at)
    assert [s.value for s in at.selectbox][:4] == [NAME, "@champion", NAME, "@challenger"]
    assert len([m for m in at.metric if m.label == "Prediction"]) == 2
    assert "The models disagree on" in at.warning[0].value  # the detail shows the first, disagreeing image
    table = at.dataframe[0].value
    assert table["agree"].tolist() == [agree[differ]] + ([True] if len(chosen) == 2 else [])
    assert any("The models agree on" in m.value for m in at.markdown)


def test_a_version_deleted_after_the_page_listed_it(trained_runs):
    name = "playground-deleted"
    registry.register_run(trained_runs[0], name)
    registry.register_run(trained_runs[2], name)
    at = page(name, "1")  # loads v1 (slow once)
    store.forget_model_versions()
    at = at.run()  # a fresh listing that still has v2; v2 itself was never loaded
    MlflowClient().delete_model_version(name, "2")
    at = at.selectbox(key=f"pg_ref_a_{name}").set_value("v2").run()
    assert_no_traceback(at)
    assert "version 2 does not exist (deleted?)" in errors(at) and "pick another one" in errors(at)
    at = at.run()
    assert "v2" not in at.selectbox(key=f"pg_ref_a_{name}").options


def test_an_empty_registry_says_how_to_register_a_model(empty_store):
    at = page()
    assert_no_traceback(at)
    assert "No registered model to try yet" in at.info[0].value and "--register" in at.info[0].value


def test_an_unreachable_store_is_an_error_not_a_traceback(unreachable_store):
    at = page()
    assert_no_traceback(at)
    assert "cannot be read" in errors(at)


def test_reachable_through_the_apps_navigation(models):
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=180).run()
    at = at.switch_page("views/playground.py").run()
    assert_no_traceback(at)
    assert at.title[0].value == "Playground"


# --- the page's pure helpers: the batch table, its CSV and the top-k chart -------------------------

def _result(name: str, label: str | None, p: float = 0.0) -> predict.ImageResult:
    if label is None:
        return predict.ImageResult(name, error=f"{name}: empty file")
    return predict.ImageResult(name, prediction=predict.Prediction(label, p, [(label, p), ("x", 1 - p)], (p, 1 - p)))


def test_batch_table_marks_disagreements_and_the_csv_names_the_models():
    from dashboard import predictions

    a = [_result("1.png", "7", 0.9), _result("2.png", "3", 0.6), _result("3.png", None)]
    b = [_result("1.png", "7", 0.8), _result("2.png", "5", 0.7), _result("3.png", None)]
    table = predictions.results_frame(a, b)
    assert table["agree"].tolist() == [True, False, None] and table["warning"].tolist() == ["", "", ""]
    assert table["top"][0] == "7 90.0%; x 10.0%" and table["error"][2] == "3.png: empty file"
    styles = [predictions.disagreement_styles(row)[0] for _, row in table.iterrows()]
    assert styles == ["", predictions.DISAGREE_STYLE, predictions.ERROR_STYLE]  # a failed image is not a disagreement
    assert predictions.ERROR_STYLE != predictions.DISAGREE_STYLE
    csv = predictions.to_csv(table, "models:/m/1", "models:/m/2").decode().splitlines()
    assert csv[0] == ("image,prediction,confidence,warning,top,error,B prediction,B confidence,B top,agree,"
                      "model,B model")
    assert csv[2].startswith("2.png,3,0.6,,") and csv[2].endswith(",False,models:/m/1,models:/m/2")
    assert list(predictions.results_frame(a).columns) == ["image", "prediction", "confidence", "warning", "top",
                                                          "error"]


def test_an_image_unlike_the_training_data_is_flagged_in_its_row_and_csv_and_not_counted_as_agreeing():
    from dashboard import predictions

    a = [_result("digit.png", "7", 0.9), _result("photo.png", "8", 0.9983), _result("other.png", "3", 0.5)]
    b = [_result("digit.png", "7", 0.8), _result("photo.png", "8", 0.97), _result("other.png", "5", 0.6)]
    colour = ["it is a colour picture"]
    table = predictions.results_frame(a, b, [[], colour, []], [[], colour, []])
    assert table["warning"].tolist() == ["", "it is a colour picture.", ""]
    assert predictions.agreement(table) == (1, 2, 1)  # the photo's agreement is not counted
    csv = predictions.to_csv(table, "models:/m/1", "models:/m/2").decode().splitlines()
    assert csv[2].startswith("photo.png,8,0.9983,it is a colour picture.,")
    only_b = predictions.results_frame(a, b, [[], [], []], [[], colour, []])
    assert only_b["warning"][1] == "B: it is a colour picture." and predictions.agreement(only_b)[2] == 1


def test_top_classes_chart_ranks_best_first():
    import pandas as pd

    from dashboard import charts

    fig = charts.top_classes_figure(pd.DataFrame({"label": ["7", "1", "9"], "probability": [0.85, 0.1, 0.05]}))
    assert len(fig.data) == 1 and fig.layout.yaxis.categoryarray == ("9", "1", "7")  # drawn bottom-up: 7 on top
    assert list(fig.data[0].text) == ["85.0%", "10.0%", "5.0%"] and fig.layout.xaxis.range == (0, 1)


def photo_png(width: int = 200, height: int = 150) -> bytes:
    """A colour photo-like image: smooth RGB gradients, nothing like an 8x8 grayscale digit."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / width, 255 * y / height, 128 + 0 * x], axis=2).astype(np.uint8)
    return encoded(Image.fromarray(rgb, "RGB"), "PNG")


def digit_png(index: int = 0) -> bytes:
    from pipeline.config import RunConfig
    from pipeline.training import data

    return encoded(Image.fromarray(data.load(RunConfig(dataset="digits")).test.images[index, 0].numpy(), "L"), "PNG")


def test_a_photo_is_flagged_in_its_row_and_left_out_of_the_agreement_count(models):
    at = page(NAME, "champion")
    at.toggle(key="pg_compare").set_value(True)
    files = [("digit.png", digit_png(), "image/png"), ("photo.png", photo_png(), "image/png")]
    at = at.file_uploader(key="pg_upload_0").set_value(files).run()
    assert_no_traceback(at)
    table = at.dataframe[0].value
    [digit, photo] = table["warning"].tolist()
    assert digit == "" and "colour picture" in photo and "200×150" in photo and photo.endswith(".")
    summary = next(m.value for m in at.markdown if "The models agree on" in m.value)
    assert " of 1 images**" in summary and "1 more left out" in summary  # the photo is not counted


def test_an_inverted_digit_is_named_in_one_plain_sentence(models):
    inverted = Image.fromarray(255 - np.asarray(Image.open(io.BytesIO(digit_png()))), "L")
    at = page(NAME, "1")
    at = at.file_uploader(key="pg_upload_0").set_value([("inverted.png", encoded(inverted, "PNG"), "image/png")]).run()
    assert_no_traceback(at)
    [warned] = [w.value for w in at.warning if "Unlike what this model was trained on" in w.value]
    assert "dark on light" in warned and "?." not in warned and warned.endswith(".")


def test_the_upload_box_states_the_one_upload_limit(models, monkeypatch):
    monkeypatch.setenv("RUNBOARD_UPLOAD_MB", "3")
    at = page(NAME, "1")
    box = at.file_uploader(key="pg_upload_0")
    assert box.proto.max_upload_size_mb == 3  # the box reads "Limit 3MB per file" and refuses more by name
    assert "MB" not in box.label  # said once, by the box, not again (differently) in the label


def test_clear_removes_uploads_too_and_an_unlike_input_is_named(models):
    at = page(NAME, "1")
    photo = Image.fromarray(np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8), "RGB")
    at = at.file_uploader(key="pg_upload_0").set_value([("photo.png", encoded(photo, "PNG"), "image/png")]).run()
    assert_no_traceback(at)
    warned = " ".join(w.value for w in at.warning)
    assert "Unlike what this model was trained on" in warned and "colour picture" in warned and "160×120" in warned
    assert not at.button(key="pg_clear").disabled  # uploads alone are something to clear
    at = at.button(key="pg_clear").click().run()
    assert_no_traceback(at)
    assert "Upload images or click a sample" in " ".join(i.value for i in at.info)
    assert not at.file_uploader(key="pg_upload_1").value


def test_each_explanation_has_a_colour_scale_for_what_its_method_can_show(models):
    at = page(NAME, "champion")
    at = next(b for b in at.button if b.key.startswith("pg_sample_")).click().run()
    at.toggle(key="pg_compare").set_value(True)
    at = at.run()
    assert_no_traceback(at)
    maps = [t for f in figures(at) for t in f["data"] if t.get("type") == "heatmap"]
    scales = [(t["zmin"], [str(x) for x in t["colorbar"]["ticktext"]]) for t in maps if t.get("showscale")]
    assert scales == [(0, ["0", "raised"]), (-1, ["lowered", "0", "raised"])]  # Grad-CAM cnn, then the mlp's IG
    assert "≥ 0" in " | ".join(c.value for c in at.caption)  # said where the Grad-CAM map is
