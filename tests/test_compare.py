"""`python -m pipeline compare A B` on real runs: the paired test's numbers, and its refusals (exit 2).

Run: .venv/bin/python -m pytest tests/test_compare.py -q
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from pipeline import cli, names
from pipeline.runs import tracking, train
from pipeline.serving import paired
from tests.conftest import TINY
from pipeline.config import RunConfig


@pytest.fixture(scope="module")
def client(store):
    return tracking.connect()


@pytest.fixture(scope="module")
def twin(trained_run) -> str:
    """The first run's config trained again: the same seed on the same CPU gives the same predictions."""
    return train.run(RunConfig(**TINY, experiment="tests-compare", run_name="tiny-cnn-again"), progress=False)


def _fake(client, source: str, change, tmp) -> str:
    """A run holding `source`'s predictions.npz changed by `change`: what a run on other data would keep."""
    kept = paired.arrays(open(client.download_artifacts(source, names.PREDICTIONS_NPZ, str(tmp)), "rb").read())
    arrays = change({k: kept[k] for k in ("probabilities", "labels", "predicted", "indices")})
    run_id = client.create_run(tracking.experiment_id(client, "tests-compare"), run_name="changed").info.run_id
    tracking.log_arrays(client, run_id, arrays, names.PREDICTIONS_NPZ)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def test_the_paired_numbers_from_the_logged_files(client, trained_runs):
    a, b = (paired.load(client, r) for r in (trained_runs[0], trained_runs[2]))  # cnn vs mlp
    result = paired.compare(a, b)
    right_a, right_b = a.predicted == a.labels, b.predicted == b.labels
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    assert (result.only_a, result.only_b, result.n) == (only_a, only_b, 359)
    assert result.both_right + result.only_a + result.only_b + result.both_wrong == 359
    assert result.p_value == pytest.approx(binomtest(only_b, only_a + only_b, 0.5).pvalue, rel=1e-12)
    assert result.difference == pytest.approx(right_b.mean() - right_a.mean())
    assert result.low <= result.difference <= result.high
    assert len(result.only_a_ids) == only_a and len(result.only_b_ids) == only_b


def test_two_identical_runs_give_p_1_and_no_difference(client, trained_run, twin, capsys):
    assert cli.main(["compare", trained_run, twin, "--resamples", "1000"]) == 0
    out = capsys.readouterr().out
    assert "only A right 0 · only B right 0" in out and "+0.0 points" in out and "McNemar p = 1 " in out
    result = paired.compare(paired.load(client, trained_run), paired.load(client, "models:/digits-cnn/1"))
    assert result.p_value == 1.0 and result.difference == 0 and result.low == result.high == 0
    assert paired.sentence(result).startswith("digits-cnn v1 vs tiny-cnn")


@pytest.mark.parametrize("change, why", [
    (lambda z: {**z, "indices": z["indices"] + 1}, "different images"),
    (lambda z: {k: v[:-1] for k, v in z.items()}, "different images (359 vs 358"),
    (lambda z: {**z, "labels": (z["labels"] + 1) % 10}, "different true labels"),
])
def test_refuses_runs_whose_test_images_differ(client, trained_run, tmp_path, capsys, change, why):
    other = _fake(client, trained_run, change, tmp_path)
    assert cli.main(["compare", trained_run, other]) == 2
    assert why in capsys.readouterr().err


def test_refuses_what_it_cannot_read(client, trained_run, edge_free_run, capsys):
    assert cli.main(["compare", trained_run, "not-a-run"]) == 2
    assert "neither a run id" in capsys.readouterr().err
    assert cli.main(["compare", trained_run, "0" * 32]) == 2
    assert "no run with id" in capsys.readouterr().err
    assert cli.main(["compare", trained_run, edge_free_run]) == 2
    assert f"has no {names.PREDICTIONS_NPZ}" in capsys.readouterr().err
    assert cli.main(["compare", trained_run, trained_run, "--resamples", "5"]) == 2


@pytest.fixture
def edge_free_run(client) -> str:
    """A finished run that kept nothing (trained before predictions were kept)."""
    run_id = client.create_run(tracking.experiment_id(client, "tests-compare"), run_name="old").info.run_id
    client.set_terminated(run_id, "FINISHED")
    return run_id


def test_points_and_sentence_read_as_people_write_them():
    c = paired.Comparison("v1", "v2", 359, 300, 10, 13, 36, 0.86, 0.868, -0.003, 0.019, 0.18, 1000,
                          np.array([]), np.array([]))
    assert paired.sentence(c) == ("v2 vs v1 on the same 359 images: +0.8 points (95 % CI −0.3 to +1.9), "
                                  "p = 0.18: not a significant difference")
