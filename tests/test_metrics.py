"""Metrics against hand-computed values (and scikit-learn as a second opinion). Run: make test."""
import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from pipeline.training import metrics

Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])


def test_confusion_matrix_rows_are_true_classes():
    m = metrics.confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert m.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_per_class_by_hand():
    m = metrics.confusion_matrix(Y_TRUE, Y_PRED, 3)
    pc = metrics.per_class_metrics(m, ["a", "b", "c"])
    # class a: tp 2, predicted 2, actual 3 -> p 1, r 2/3, f1 0.8
    assert pc["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    # class b: tp 1, predicted 2, actual 2 -> p 0.5, r 0.5, f1 0.5
    assert pc["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    # class c: tp 1, predicted 2, actual 1 -> p 0.5, r 1, f1 2/3
    assert pc["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    macro = metrics.macro_scores(pc)
    p, r, f, _ = precision_recall_fscore_support(Y_TRUE, Y_PRED, average="macro")
    assert macro == pytest.approx({"precision": p, "recall": r, "f1": f})


def test_never_predicted_class_scores_zero_not_nan():
    m = metrics.confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2)
    pc = metrics.per_class_metrics(m, ["a", "b"])
    assert pc["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_most_confused_pairs():
    m = np.array([[5, 3, 0], [1, 4, 0], [0, 7, 2]])
    assert metrics.most_confused(m, ["a", "b", "c"], top=2) == [("c", "b", 7), ("a", "b", 3)]


WORDS = ["eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero"]  # a folder's sorted names


def test_classes_named_by_numbers_show_in_number_order_others_as_given():
    show = lambda labels: [labels[i] for i in metrics.display_order(labels)]  # noqa: E731
    assert show(WORDS) == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert show(["0", "1", "10", "2", "9"]) == ["0", "1", "2", "9", "10"]
    assert show(["class1", "class10", "class2", "class9"]) == ["class1", "class2", "class9", "class10"]
    assert show(["Two", "ten", "One"]) == ["One", "Two", "ten"]
    fashion = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert show(fashion) == fashion  # named classes keep their dataset's order
    assert show(["cat", "dog2"]) == ["cat", "dog2"]

