import math
import warnings

import numpy as np
import pytest

from fmnist import metrics as M


def test_confusion_matrix_counts_rows_true_cols_pred():
    cm = M.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.dtype == np.int64
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match="outside"):
        M.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="labels"):
        M.confusion_matrix([0, 1], [0], 3)


def test_per_class_report_by_hand_including_a_class_never_predicted():
    # true 0 0 0 1 1 2 ; pred 0 0 1 1 0 0  -> class 2 is never predicted
    cm = M.confusion_matrix([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 0, 0], 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division warnings
        rows = M.per_class_report(cm, ["a", "b", "c"])
    a, b, c = rows
    assert a["class"] == 0 and a["name"] == "a"
    assert a["precision"] == pytest.approx(2 / 4) and a["recall"] == pytest.approx(2 / 3)
    assert a["f1"] == pytest.approx(2 * (0.5 * 2 / 3) / (0.5 + 2 / 3))
    assert a["support"] == 3 and a["accuracy"] == a["recall"]
    assert b["precision"] == pytest.approx(1 / 2) and b["recall"] == pytest.approx(1 / 2)
    assert b["f1"] == pytest.approx(0.5)
    assert c == {"class": 2, "name": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "accuracy": 0.0}


def test_per_class_report_class_with_no_samples():
    rows = M.per_class_report(np.array([[2, 0], [0, 0]]), ["x", "y"])
    assert rows[1]["support"] == 0 and rows[1]["recall"] == 0.0 and rows[1]["f1"] == 0.0


def test_summary_accuracy_loss_and_macro_f1():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.0, 0.0, 1.0]])
    y = [0, 1, 1, 0]
    s = M.summary(y, probs, ["a", "b", "c"])
    assert s["accuracy"] == pytest.approx(0.5)
    # the last sample gives p_true = 0, clipped to 1e-12
    expected = -(math.log(0.7) + math.log(0.8) + math.log(0.3) + math.log(M.NLL_EPS)) / 4
    assert s["loss"] == pytest.approx(expected)
    assert s["confusion"] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert s["class_names"] == ["a", "b", "c"]
    assert s["macro_f1"] == pytest.approx(np.mean([r["f1"] for r in s["per_class"]]))
    assert s["num_samples"] == 4
    import json
    json.dumps(s)  # what metrics.json holds: plain Python types only


def test_summary_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        M.summary([0, 1], np.ones((3, 2)) / 2, ["a", "b"])


def test_group_runs_and_mean_std():
    runs = [
        {"optimizer": "sgd", "lr": 0.1, "seed": 0, "test_acc": 0.8, "diverged": False,
         "history": [{"epoch": 0, "val_acc": 0.1}, {"epoch": 1, "val_acc": 0.7}]},
        {"optimizer": "adam", "lr": 0.001, "seed": 0, "test_acc": 0.9, "diverged": False, "history": []},
        {"optimizer": "sgd", "lr": 0.1, "seed": 1, "test_acc": 0.6, "diverged": False, "history": []},
        {"optimizer": "sgd", "lr": 0.1, "seed": 2, "test_acc": float("nan"), "diverged": True, "history": []},
    ]
    groups = M.group_runs(runs)
    assert [g["label"] for g in groups] == ["sgd (lr=0.1)", "adam (lr=0.001)"]
    assert len(groups[0]["runs"]) == 3 and len(groups[0]["ok"]) == 2 and groups[0]["diverged"] == 1
    mean, std, n = M.mean_std([r["test_acc"] for r in groups[0]["ok"]])
    assert (mean, n) == (pytest.approx(0.7), 2) and std == pytest.approx(math.sqrt(0.02))
    assert M.mean_std([0.5]) == (0.5, 0.0, 1)
    assert math.isnan(M.mean_std([None])[0])
    assert M.final_value(runs[0], "val_acc") == 0.7 and M.final_value(runs[1], "val_acc") is None
