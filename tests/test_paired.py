"""The paired comparison on hand-made predictions: the 2x2 table, the bootstrap, McNemar, the refusals and the
words, each against a value worked out here; and `load` from a real store without training (the mutation
bench runs these for every mutant of serving/paired.py; tests/test_compare.py does the same on real runs).

Run: .venv/bin/python -m pytest tests/test_paired.py -q
"""
from __future__ import annotations

import io

import mlflow
import numpy as np
import pytest
from scipy.stats import binomtest

from pipeline import names
from pipeline.runs import tracking
from pipeline.serving import paired


def side(label="A", ids=(10, 11, 12, 13, 14, 15), labels=(0, 1, 0, 1, 0, 1), predicted=(0, 1, 0, 1, 0, 1),
         classes=("zero", "one"), digests=()) -> paired.Side:
    return paired.Side(label, label.lower() * 32, np.array(ids), np.array(labels), np.array(predicted),
                       list(classes), frozenset(digests))


IDS8, LABELS8 = (10, 11, 12, 13, 14, 15, 16, 17), (0, 1, 0, 1, 0, 1, 0, 0)


def test_the_table_counts_each_kind_of_pair():
    a = side("A", IDS8, LABELS8, predicted=(0, 1, 1, 1, 1, 0, 1, 1))  # right on 10, 11, 13
    b = side("B", IDS8, LABELS8, predicted=(0, 0, 0, 1, 1, 1, 1, 0))  # right on 10, 12, 13, 15, 17
    c = paired.compare(a, b, resamples=1200)
    assert (c.n, c.both_right, c.only_a, c.only_b, c.both_wrong) == (8, 2, 1, 3, 2)
    assert (c.a, c.b, c.resamples) == ("A", "B", 1200)
    assert c.accuracy_a == pytest.approx(3 / 8) and c.accuracy_b == pytest.approx(5 / 8)
    assert c.difference == pytest.approx(2 / 8)
    assert c.only_a_ids.tolist() == [11] and c.only_b_ids.tolist() == [12, 15, 17]
    assert c.p_value == pytest.approx(binomtest(3, 4, 0.5).pvalue) == pytest.approx(0.625)


def test_every_image_can_be_drawn_and_the_seed_is_zero_unless_given():
    # two images, B alone right on the first: a resample of only the second image gives 0, of only the first 1
    a, b = side("A", (1, 2), (0, 0), (1, 1)), side("B", (1, 2), (0, 0), (0, 1))
    c = paired.compare(a, b, resamples=400)
    assert (c.low, c.high) == (0.0, 1.0) and c.resamples == 400
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 300)
    a = side("A", np.arange(300), labels, np.where(rng.random(300) < 0.7, labels, 1 - labels))
    b = side("B", np.arange(300), labels, np.where(rng.random(300) < 0.75, labels, 1 - labels))
    zero, one = paired.compare(a, b, 200, seed=0), paired.compare(a, b, 200, seed=1)
    assert (zero.low, zero.high) != (one.low, one.high)  # the seed matters for these data...
    default = paired.compare(a, b, 200)
    assert (default.low, default.high) == (zero.low, zero.high)  # ...and the default is 0


def test_b_is_matched_to_a_by_id_whatever_its_order():
    a = side("A", IDS8, LABELS8, predicted=(0, 1, 1, 1, 1, 0, 1, 1))
    order = [5, 3, 7, 0, 4, 6, 1, 2]
    shuffled = side("B", ids=np.array(IDS8)[order], labels=np.array(LABELS8)[order],
                    predicted=np.array((0, 0, 0, 1, 1, 1, 1, 0))[order])
    c = paired.compare(a, shuffled, resamples=500)
    assert (c.both_right, c.only_a, c.only_b, c.both_wrong) == (2, 1, 3, 2)
    assert c.only_b_ids.tolist() == [12, 15, 17]


def test_the_bootstrap_interval_is_the_percentiles_of_resampled_mean_differences():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, 300)
    wrong = (labels + 1) % 3
    a = side("A", ids=np.arange(300), labels=labels, predicted=np.where(rng.random(300) < 0.8, labels, wrong))
    b = side("B", ids=np.arange(300), labels=labels, predicted=np.where(rng.random(300) < 0.9, labels, wrong))
    c = paired.compare(a, b, resamples=1200, seed=3)
    diff = (b.predicted == labels).astype(float) - (a.predicted == labels).astype(float)
    draw = np.random.default_rng(3)
    means = np.concatenate([diff[draw.integers(0, 300, size=(500, 300))].mean(1),
                            diff[draw.integers(0, 300, size=(500, 300))].mean(1),
                            diff[draw.integers(0, 300, size=(200, 300))].mean(1)])
    low, high = np.percentile(means, [2.5, 97.5])
    assert (c.low, c.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert c.low < c.difference < c.high
    assert c.p_value == pytest.approx(binomtest(c.only_b, c.only_a + c.only_b, 0.5).pvalue, rel=1e-12)
    assert c.significant == (c.p_value < 0.05)


def test_identical_sides_give_p_one_and_no_difference():
    c = paired.compare(side("A"), side("B"), resamples=100)
    assert (c.p_value, c.difference, c.low, c.high, c.only_a, c.only_b) == (1.0, 0.0, 0.0, 0.0, 0, 0)
    assert not c.significant


def test_significance_is_p_below_five_percent():
    c = paired.Comparison("A", "B", 10, 5, 0, 5, 0, 0.5, 1.0, 0.2, 0.8, 0.049, 10, np.array([]), np.array([]))
    assert c.significant
    assert not paired.Comparison(**{**c.__dict__, "p_value": 0.05}).significant


@pytest.mark.parametrize("b, why", [
    (side("B", digests=("d2",)), "different data (dataset digests d1 vs d2)"),
    (side("B", classes=("0", "1")), "different classes (2 vs 2: ['zero', 'one'] vs ['0', '1'])"),
    (side("B", ids=(10, 11, 12, 13, 14, 99)), "different images (6 vs 6 test images, 2 not in both)"),
    (side("B", ids=(10, 11, 12, 13, 14), labels=(0, 1, 0, 1, 0), predicted=(0, 1, 0, 1, 0)),
     "different images (6 vs 5 test images, 1 not in both)"),
    (side("B", ids=("10", "11", "12", "13", "14", "15")), "different images"),
    (side("B", labels=(0, 1, 0, 1, 1, 1)), "give 1 of the same test images different true labels: the data "
                                           "changed between them"),
    (side("B", ids=(10, 11, 12, 13, 14, 15, 15), labels=(0, 1, 0, 1, 0, 1, 1), predicted=(0, 1, 0, 1, 0, 1, 1)),
     "different images (6 vs 7 test images, 0 not in both)"),  # the same ids, one twice
    (side("B", ids=(10.0, 11.0, 12.0, 13.0, 14.0, 15.0)), "different images (6 vs 6 test images, 0 not in both)"),
])
def test_refuses_sides_that_are_not_the_same_images(b, why):
    with pytest.raises(paired.CompareError) as refused:
        paired.compare(side("A", digests=("d1",)), b)
    assert why in str(refused.value) and "A and B" in str(refused.value)


def test_refusals_name_every_digest_and_the_first_five_classes():
    many = [str(i) for i in range(7)]
    with pytest.raises(paired.CompareError) as refused:
        paired.compare(side("A", digests=("d2", "d1")), side("B", digests=("d3", "d4")))
    assert "(dataset digests d1, d2 vs d3, d4)" in str(refused.value)
    with pytest.raises(paired.CompareError) as refused:
        paired.compare(side("A", classes=many), side("B", classes=many[::-1]))
    assert str(refused.value).endswith("(7 vs 7: ['0', '1', '2', '3', '4'] vs ['6', '5', '4', '3', '2'])")


def test_a_side_without_digests_or_classes_is_not_refused_for_them():
    c = paired.compare(side("A", digests=("d1",), classes=()), side("B", digests=(), classes=("0", "1")))
    assert c.n == 6


def test_no_predictions_is_refused():
    empty = side("A", ids=(), labels=(), predicted=())
    with pytest.raises(paired.CompareError, match="A and B kept no test predictions"):
        paired.compare(empty, side("B", ids=(), labels=(), predicted=()))


def test_points_and_p_read_as_people_write_them():
    assert paired.points(0.008) == "+0.8" and paired.points(-0.0304) == "−3.0"
    assert paired.points(-0.0001) == "+0.0"  # no "−0.0"
    assert paired.p_text(0.18) == "p = 0.18" and paired.p_text(0.001) == "p = 0.001"
    assert paired.p_text(0.00099) == "p < 0.001"


def test_the_report_is_the_table_the_docs_show():
    c = paired.Comparison("cnn", "mlp", 359, 327, 31, 0, 1, 0.9972, 0.9109, -0.117, -0.058, 9.31323e-10, 10_000,
                          np.array([]), np.array([]))
    assert paired.report(c).splitlines() == [
        "A: cnn           test accuracy 99.72%",
        "B: mlp           test accuracy 91.09%",
        "on the same 359 test images:",
        "                  B right   B wrong",
        "A right               327        31",
        "A wrong                 0         1",
        "both right 327 · only A right 31 · only B right 0 · both wrong 1",
        "accuracy B − A: −8.6 points, 95 % paired bootstrap interval −11.7 to −5.8 (10,000 resamples)",
        "exact McNemar p < 0.001 (two-sided binomial test on the 31 discordant pairs; p = 9.31323e-10): "
        "a significant difference at 5 %",
    ]
    long_a = paired.Comparison(**{**c.__dict__, "a": "a-run-with-a-long-name", "only_b": 4})
    lines = paired.report(long_a).splitlines()
    assert lines[0].index("test accuracy") == lines[1].index("test accuracy") == len("A: a-run-with-a-long-name  ")
    assert "on the 35 discordant pairs" in lines[-1]
    long_b = paired.Comparison(**{**c.__dict__, "b": "b-run-with-a-long-name"})
    lines = paired.report(long_b).splitlines()
    assert lines[0].index("test accuracy") == lines[1].index("test accuracy") == len("B: b-run-with-a-long-name  ")
    even = paired.Comparison(**{**c.__dict__, "p_value": 0.5})
    assert paired.report(even).endswith("p = 0.5): not a significant difference at 5 %")
    assert paired.sentence(even) == ("mlp vs cnn on the same 359 images: −8.6 points (95 % CI −11.7 to −5.8), "
                                     "p = 0.5: not a significant difference")
    assert paired.sentence(c).endswith("p < 0.001: a significant difference")


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_digests_of_a_run_without_inputs_are_none():
    from types import SimpleNamespace

    assert paired._digests(SimpleNamespace()) == frozenset()
    assert paired._digests(SimpleNamespace(inputs=None)) == frozenset()
    assert paired._digests(SimpleNamespace(inputs=SimpleNamespace())) == frozenset()


def test_arrays_names_the_ids_whatever_the_file_calls_them():
    base = dict(labels=np.array([0, 1]), predicted=np.array([0, 0]), probabilities=np.eye(2, dtype=np.float32))
    assert paired.arrays(_npz(**base, paths=np.array(["a.png", "b.png"])))["ids"].tolist() == ["a.png", "b.png"]
    assert paired.arrays(_npz(**base, indices=np.array([7, 9])))["ids"].tolist() == [7, 9]
    plain = paired.arrays(_npz(**base))
    assert plain["ids"].tolist() == [0, 1] and plain["classes"] == []
    assert paired.arrays(_npz(**base, classes=np.array(["x", "y"])))["classes"] == ["x", "y"]
    with pytest.raises(ValueError):  # an object array needs pickle: refused
        paired.arrays(_npz(**base, paths=np.array([{"a": 1}, None], dtype=object)))


@pytest.fixture(scope="module")
def client(store):
    return tracking.connect()


def _run(client, name: str, kept: dict | None, test_digest: str = "", train_digest: str = "") -> str:
    experiment = tracking.experiment_id(client, "tests-paired")
    with mlflow.start_run(experiment_id=experiment, run_name=name) as run:
        for digest, context in ((test_digest, "test"), (train_digest, "train")):
            if digest:
                dataset = mlflow.data.from_numpy(np.zeros((2, 2)), name=f"{context}-{digest}", digest=digest)
                mlflow.log_input(dataset, context=context)
    if kept is not None:
        tracking.log_arrays(client, run.info.run_id, kept, names.PREDICTIONS_NPZ)
    return run.info.run_id


KEPT = dict(labels=np.array([0, 1, 1]), predicted=np.array([0, 1, 0]), indices=np.array([4, 5, 6]),
            probabilities=np.eye(3, 2, dtype=np.float32), classes=np.array(["0", "1"]))


def test_load_reads_a_run_by_id_with_its_name_and_test_digest(client):
    run_id = _run(client, "loaded", KEPT, test_digest="abc123", train_digest="zzz999")
    loaded = paired.load(client, run_id)
    assert loaded.label == f"loaded ({run_id[:8]})" and loaded.run_id == run_id
    assert loaded.ids.tolist() == [4, 5, 6] and loaded.predicted.tolist() == [0, 1, 0]
    assert loaded.labels.tolist() == [0, 1, 1] and loaded.classes == ["0", "1"]
    assert loaded.digests == frozenset({"abc123"})  # the test split's digest, not the train split's
    only_train = paired.load(client, _run(client, "train-only", KEPT, train_digest="zzz999"))
    assert only_train.digests == frozenset({"zzz999"})
    assert paired.load(client, f" {run_id} ").run_id == run_id


def test_load_reads_a_model_uri_by_its_version_name(client):
    run_id = _run(client, "registered", KEPT)
    client.create_registered_model("paired-model")
    version = client.create_model_version("paired-model", f"runs:/{run_id}/model", run_id)
    client.set_registered_model_alias("paired-model", "candidate", version.version)
    loaded = paired.load(client, "models:/paired-model@candidate")
    assert loaded.run_id == run_id and loaded.label == f"paired-model v{version.version}"
    assert paired.load(client, f"runs:/{run_id}/model").run_id == run_id
    client.delete_registered_model("paired-model")  # the Registry and Playground tests list every model


def test_load_refuses_with_a_reason(client):
    with pytest.raises(paired.CompareError, match="'nope' is neither a run id"):
        paired.load(client, "nope")
    with pytest.raises(paired.CompareError, match=f"no run with id {'0' * 32}"):
        paired.load(client, "0" * 32)
    with pytest.raises(paired.CompareError, match=f"no run with id {'AB' * 16}"):  # hex in capitals is an id
        paired.load(client, "AB" * 16)
    bare = _run(client, "bare", None)
    with pytest.raises(paired.CompareError) as refused:
        paired.load(client, bare)
    assert str(refused.value) == (f"bare ({bare[:8]}) has no {names.PREDICTIONS_NPZ} (trained before runs kept "
                                  "their predictions, or not finished): nothing to compare")
