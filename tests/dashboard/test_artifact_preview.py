"""The run page's Artifacts tab: previews of what people open, human sizes, binary files download only.

Run: .venv/bin/python -m pytest tests/dashboard/test_artifact_preview.py -q
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dashboard import artifact_preview
from pipeline.runs import tracking
from tests.dashboard.conftest import open_page, texts


@pytest.fixture(scope="module")
def files_run(store) -> str:
    """A run with a 500-line log, a CSV, a YAML, a JSON, a PNG and a 2.9 MB binary, logged with MLflow's client."""
    client = tracking.connect()
    run_id = client.create_run(tracking.experiment_id(client, "dashboard-artifacts"), run_name="files").info.run_id
    client.log_text(run_id, "\n".join(f"epoch line {i}" for i in range(1, 501)), "logs/train.log")
    client.log_text(run_id, "path,given,suggested\na.png,cat,dog\nb.png,dog,cat\n", "audit/label_issues.csv")
    client.log_text(run_id, "lr: 0.01\nlayers: [1, 2]\n", "config/run.yaml")
    client.log_dict(run_id, {"labels": ["a", "b"], "matrix": [[1, 0], [0, 1]]}, "evaluation/confusion_matrix.json")
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    client.log_image(run_id, np.asarray(Image.open(io.BytesIO(png.getvalue()))), "evaluation/red.png")
    client.log_text(run_id, "x" * 2_932_105, "checkpoints/a.pt")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def pick(at, run_id: str, path: str):
    return at.selectbox(key=f"preview-{run_id}").set_value(path).run()


@pytest.mark.parametrize("path, expected", [("logs/train.log", "text"), ("model/MLmodel", "text"),
                                            ("a/b.JSON", "json"), ("x.yml", "yaml"), ("t.csv", "csv"),
                                            ("e.png", "image"), ("checkpoints/a.pt", "binary"),
                                            ("evaluation/predictions.npz", "binary"), ("m.onnx", "binary")])
def test_kind_follows_the_file_name(path, expected):
    assert artifact_preview.kind(path) == expected


def test_sizes_read_as_people_read_them_and_binaries_download_only(files_run):
    at = open_page("run_detail", run=files_run)
    assert not at.exception
    lines = texts(at.markdown)
    assert "`checkpoints/a.pt` · 2.9 MB · binary, download only" in lines
    assert "checkpoints/a.pt" not in at.selectbox(key=f"preview-{files_run}").options
    assert len(at.download_button) >= 6


def test_a_log_shows_its_tail_then_all(files_run):
    at = pick(open_page("run_detail", run=files_run), files_run, "logs/train.log")
    shown = at.code[0].value.splitlines()
    assert len(shown) == artifact_preview.TAIL_LINES and shown[-1] == "epoch line 500"
    assert "300 lines above them" in texts(at.caption)
    at.toggle(key=f"preview-{files_run}-all").set_value(True).run()
    assert at.code[0].value.splitlines()[0] == "epoch line 1"


def test_json_yaml_csv_and_images_are_shown_as_what_they_are(files_run):
    at = pick(open_page("run_detail", run=files_run), files_run, "evaluation/confusion_matrix.json")
    assert '"matrix"' in at.json[0].proto.body
    at = pick(at, files_run, "config/run.yaml")
    assert "lr: 0.01" in at.code[0].value and at.code[0].language == "yaml"
    at = pick(at, files_run, "audit/label_issues.csv")
    table = next(d.value for d in at.dataframe if "suggested" in d.value.columns)
    assert list(table["given"]) == ["cat", "dog"]
    at = pick(at, files_run, "evaluation/red.png")
    assert any("evaluation/red.png" in (img.captions or [""])[0] for img in at.image)


def test_the_models_mlmodel_file_is_shown_as_text(trained_run):
    at = pick(open_page("run_detail", run=trained_run), trained_run, "model/MLmodel")
    assert not at.exception and any("flavors:" in c.value for c in at.code)
