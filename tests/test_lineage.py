"""What a run trained on: the content digest (stable, changes with one byte, a rename, an exclusion) and
the dataset a real run logs with mlflow.log_input.

Run: .venv/bin/python -m pytest tests/test_lineage.py -q
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from pipeline import names
from pipeline.config import ConfigError, RunConfig
from pipeline.imaging import lineage
from pipeline.training import data


def _folder(root, per_class: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    for c in ("cat", "dog"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(root / c / f"{i}.png")
    return root


def _digest(name: str, **options) -> str:
    return data.load(RunConfig(dataset=f"imagefolder:{name}", **options)).lineage.digest


@pytest.fixture()
def folder(store, request):
    root = _folder(store / "data" / request.node.name)
    yield root
    shutil.rmtree(root)


def test_the_digest_is_stable_and_changes_with_one_byte_a_rename_or_an_added_file(folder):
    name = folder.name
    first = _digest(name)
    assert _digest(name) == first
    assert first == lineage.folder_digest(folder, sorted(folder.rglob("*.png")))  # streamed reads agree
    raw = bytearray((folder / "cat" / "0.png").read_bytes())
    raw[-13] ^= 1  # a byte inside the PNG's IEND CRC: the pixels still decode, the bytes differ
    (folder / "cat" / "0.png").write_bytes(bytes(raw))
    changed = _digest(name)
    assert changed != first
    (folder / "cat" / "0.png").rename(folder / "cat" / "zero.png")
    renamed = _digest(name)
    assert renamed not in (first, changed)
    shutil.copy(folder / "dog" / "1.png", folder / "dog" / "new.png")
    assert _digest(name) not in (first, changed, renamed)


def test_an_exclusion_list_leaves_files_out_and_is_part_of_the_digest(folder, store):
    name = folder.name
    whole = data.load(RunConfig(dataset=f"imagefolder:{name}"))
    listed = store / "data" / f"{name}-exclude.txt"
    listed.write_text("# label issues from audit abc\ncat/1.png\ndog/2.png\n")
    config = RunConfig(dataset=f"imagefolder:{name}", exclude=listed.name)
    fewer = data.load(config)
    total = lambda d: len(d.train) + len(d.val) + len(d.test)  # noqa: E731
    assert total(fewer) == total(whole) - 2
    assert fewer.lineage.excluded == ["cat/1.png", "dog/2.png"]
    assert fewer.lineage.excluded_reason == "label issues from audit abc"
    assert fewer.lineage.digest != whole.lineage.digest


def test_exclusion_lists_outside_the_data_root_or_for_builtins_are_refused(store, tmp_path):
    (tmp_path / "x.txt").write_text("a.png\n")
    with pytest.raises(ConfigError, match="exclude must be inside the data root"):
        RunConfig(dataset="imagefolder:anything", exclude=str(tmp_path / "x.txt"))
    with pytest.raises(ConfigError, match="exclude lists files of an image folder"):
        RunConfig(dataset="digits", exclude="x.txt")


def test_builtin_datasets_digest_their_tensors(store):
    a, b = data.load(RunConfig()).lineage, data.load(RunConfig(seed=3)).lineage
    assert a.digest == b.digest and len(a.digest) == 32  # the seed moves the validation split, not the data
    assert a.profile["files"] == 1797 and a.name == a.source == "digits"


def test_a_run_logs_its_dataset_with_log_input_and_its_exclusions(folder, store):
    from pipeline.runs import train

    listed = store / "data" / f"{folder.name}-exclude.txt"
    listed.write_text("# duplicates\ncat/3.png\n")
    run_id = train.run(RunConfig(dataset=f"imagefolder:{folder.name}", epochs=1, exclude=listed.name, val_fraction=0.2,
                                 experiment="lineage"), progress=False)
    run = MlflowClient().get_run(run_id)
    [logged] = run.inputs.dataset_inputs
    assert logged.dataset.name == f"imagefolder:{folder.name}"
    assert logged.dataset.digest == run.data.tags[names.TAG_DATASET_DIGEST]
    assert '"files": 19' in logged.dataset.profile and '"excluded": 1' in logged.dataset.profile
    assert run.data.tags[names.TAG_DATASET_SOURCE] == folder.name
    assert run.data.tags[names.TAG_EXCLUDED] == "1" and run.data.tags[names.TAG_EXCLUDED_REASON] == "duplicates"
    text = MlflowClient().download_artifacts(run_id, names.EXCLUDED_FILES_TXT)
    assert open(text).read() == "cat/3.png\n"
