"""report.metrics and report.run_report: the numbers and report.md, worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kerakit import report
from kerakit.errors import DataError

# A small fixed example, worked out by hand below. Class 3 ("d") never occurs
# and is never predicted: every ratio of it divides by zero and must be 0.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2]
Y_PRED = [0, 1, 0, 1, 1, 2, 0, 1]
NAMES = ["a", "b", "c", "d"]


# --- report: the numbers -------------------------------------------------------


def test_confusion_matrix_by_hand():
    cm = report.confusion_matrix(Y_TRUE, Y_PRED, num_classes=4)
    # rows: true class, columns: predicted class
    assert cm.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    assert cm.sum() == len(Y_TRUE)
    assert np.trace(cm) == 5


def test_classification_report_by_hand():
    r = report.classification_report(Y_TRUE, Y_PRED, class_names=NAMES)
    # tp = 2, 2, 1, 0; predicted-as = 3, 4, 1, 0; support = 3, 2, 3, 0
    expected = {
        "a": (2 / 3, 2 / 3, 2 / 3, 3),
        "b": (2 / 4, 2 / 2, 2 * 0.5 * 1 / 1.5, 2),  # F1 = 2/3
        "c": (1 / 1, 1 / 3, 2 * 1 * (1 / 3) / (4 / 3), 3),  # F1 = 1/2
        "d": (0.0, 0.0, 0.0, 0),  # zero division -> 0
    }
    assert list(r["per_class"]) == NAMES
    for name, (p, rec, f1, support) in expected.items():
        row = r["per_class"][name]
        assert row["precision"] == pytest.approx(p)
        assert row["recall"] == pytest.approx(rec)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support
    assert r["accuracy"] == pytest.approx(5 / 8)
    assert r["support"] == 8
    assert r["macro_avg"]["precision"] == pytest.approx(13 / 24)  # (2/3+1/2+1+0)/4
    assert r["macro_avg"]["recall"] == pytest.approx(1 / 2)  # (2/3+1+1/3+0)/4
    assert r["macro_avg"]["f1"] == pytest.approx(11 / 24)  # (2/3+2/3+1/2+0)/4
    assert r["weighted_avg"]["precision"] == pytest.approx(6 / 8)  # (3*2/3+2*1/2+3*1)/8
    assert r["weighted_avg"]["recall"] == pytest.approx(5 / 8)  # equals accuracy
    assert r["weighted_avg"]["f1"] == pytest.approx(29 / 48)  # (3*2/3+2*2/3+3*1/2)/8


def test_classification_report_agrees_with_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 200)
    probs = rng.random((200, 5))
    ours = report.classification_report(y_true, probs)
    theirs = metrics.classification_report(
        y_true, probs.argmax(1), output_dict=True, zero_division=0
    )
    for name in map(str, range(5)):
        assert ours["per_class"][name]["f1"] == pytest.approx(theirs[name]["f1-score"])
    assert ours["macro_avg"]["f1"] == pytest.approx(theirs["macro avg"]["f1-score"])
    assert ours["weighted_avg"]["precision"] == pytest.approx(theirs["weighted avg"]["precision"])
    assert ours["accuracy"] == pytest.approx(theirs["accuracy"])


@pytest.mark.parametrize(
    "y, expected",
    [
        ([2, 0, 1], [2, 0, 1]),  # class ids
        ([[0, 0, 1], [1, 0, 0]], [2, 0]),  # one-hot
        ([[0.2, 0.7, 0.1]], [1]),  # softmax
        ([[1.0], [0.0]], [1, 0]),  # ids in a column
        ([0.2, 0.9, 0.5], [0, 1, 1]),  # sigmoid scores
    ],
)
def test_to_labels(y, expected):
    assert report.to_labels(y).tolist() == expected


def test_label_errors_say_what_to_do():
    with pytest.raises(DataError, match="same order"):
        report.confusion_matrix([0, 1], [0])
    with pytest.raises(DataError, match="num_classes"):
        report.confusion_matrix([0, 3], [0, 1], num_classes=2)
    with pytest.raises(DataError, match="duplicates"):
        report.classification_report([0], [0], class_names=["x", "x"])


def test_confident_errors_most_confident_first():
    y_true = [0, 1, 2, 0, 1]
    probs = [
        [0.9, 0.05, 0.05],  # right
        [0.6, 0.3, 0.1],  # wrong, 0.6
        [0.05, 0.9, 0.05],  # wrong, 0.9
        [0.2, 0.1, 0.7],  # wrong, 0.7
        [0.1, 0.8, 0.1],  # right
    ]
    assert report.confident_errors(y_true, probs, n=16).tolist() == [2, 3, 1]
    assert report.confident_errors(y_true, probs, n=2).tolist() == [2, 3]
    # binary sigmoid: confidence of "0" is 1 - score
    assert report.confident_errors([1, 1, 0], [0.05, 0.4, 0.7]).tolist() == [0, 2, 1]


def test_report_table_and_report_md(tmp_path):
    r = report.classification_report(Y_TRUE, Y_PRED, class_names=["a|1", "b", "c", "d"])
    table = report.format_report_table(r)
    assert table.splitlines()[0] == "| class | precision | recall | F1 | support |"
    assert "| a\\|1 | 0.667 | 0.667 | 0.667 | 3 |" in table
    assert "| d | 0.000 | 0.000 | 0.000 | 0 |" in table
    assert "| **accuracy** | | | 0.625 | 8 |" in table
    (tmp_path / "history.png").write_bytes(b"png")
    path = report.write_run_report(
        tmp_path, metrics={"loss": 0.123456, "accuracy": 0.625}, report=r, title="digits"
    )
    text = path.read_text()
    assert path.name == "report.md" and text.startswith("# digits\n")
    assert "| loss | 0.1235 |" in text and "| accuracy | 0.625 |" in text
    assert "![Learning curves](history.png)" in text
    assert "confusion.png" not in text  # only pictures that exist are linked
    assert table in text


def test_logits_are_thresholded_at_zero_and_shown_as_probabilities():
    logits = np.array([[-2.0], [-0.4], [0.3], [3.0]])  # a binary model with from_logits=True
    assert report.to_probabilities(logits, from_logits=True)[:, 0].round(2).tolist() == [
        0.12, 0.4, 0.57, 0.95,
    ]  # fmt: skip
    for from_logits in (True, None):  # None: values outside [0, 1] are logits
        pred, conf = report.predicted_with_confidence(logits, from_logits=from_logits)
        assert pred.tolist() == [0, 0, 1, 1]  # thresholded at 0, not 0.5 (that gave [0, 0, 0, 1])
        assert conf.round(2).tolist() == [0.88, 0.6, 0.57, 0.95]
    rows = report.to_probabilities(np.array([[2.0, 0.0, -1.0]]), from_logits=True)
    assert rows.sum() == pytest.approx(1.0) and rows.argmax() == 0  # softmax
    probs = np.array([[0.2], [0.7]])
    assert report.to_probabilities(probs).tolist() == probs.tolist()  # probabilities stay
    assert report.to_probabilities([0, 2, 1]).tolist() == [0, 2, 1]  # class ids stay
