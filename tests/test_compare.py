"""fmnist compare: the DeepOBS-style protocol end to end on a tiny budget."""
from __future__ import annotations

import json

import pytest

from fmnist.cli import main
from fmnist.compare import PRESETS, lr_grid, parse_optimizers
from fmnist.errors import ConfigError

TINY = ["--model", "logreg", "--epochs", "1", "--train-limit", "1500", "--val-size", "300",
        "--batch-size", "100", "--threads", "1", "--no-plots"]


def test_parse_optimizers():
    assert parse_optimizers("msgd, adam:1e-3,") == (("msgd", None), ("adam", 1e-3))
    with pytest.raises(ConfigError, match="NAME:LR"):
        parse_optimizers("adam:fast")


def test_lr_grid_is_log_spaced_around_the_default():
    assert lr_grid(0.1, 5, 10.0) == [0.01, 0.0316, 0.1, 0.316, 1.0]
    assert lr_grid(0.1, 1, 10.0) == [0.1]


def test_preset_matches_the_paper():
    p = PRESETS["dissecting-adam"]
    assert dict(p.optimizers) == {"msgd": 0.1, "adam": 1e-3, "mssd": 3e-4, "msvag": 0.3}
    assert p.base["model"]["name"] == "p1" and p.base["train"]["batch_size"] == 64
    steps = p.base["train"]["epochs"] * (55000 // 64)
    assert abs(steps - 6000) < 100  # the paper's budget of 6000 steps


@pytest.mark.real_data
def test_compare_end_to_end_and_resume(real_data_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FMNIST_DATA", str(real_data_dir))
    out = tmp_path / "cmp"
    argv = ["compare", *TINY, "--optimizers", "sgd,msvag:0.1,adam", "--lr-grid",
            "--grid-points", "2", "--seeds", "2", "--out", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    for name in ("sgd", "msvag", "adam"):
        assert name in table
    runs = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert len(runs) == 6  # 3 optimizers x 2 seeds
    assert sorted(p.name for p in (out / "grid").glob("*.json")) == [
        "adam-lr0.0001-seed0.json", "adam-lr0.01-seed0.json",
        "sgd-lr0.01-seed0.json", "sgd-lr1-seed0.json"]  # msvag's rate was given
    record = json.loads((out / "runs" / "msvag-lr0.1-seed1.json").read_text())
    assert [r["epoch"] for r in record["history"]] == [0, 1]
    assert {"train_acc", "val_acc", "test_acc"} <= set(record["history"][-1])
    assert record["history"][0]["train_acc"] is not None  # scored before training
    summary = json.loads((out / "summary.json").read_text())
    assert [r["optimizer"] for r in summary] == ["sgd", "msvag", "adam"]
    assert summary[0]["lr_chosen_by"].startswith("grid")
    assert all(0 < r["test_acc"] <= 1 for r in summary)
    # the same command again trains nothing: every run is read back
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert main(argv) == 0
    assert "done before, skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == before


@pytest.mark.real_data
def test_diverging_runs_are_recorded(real_data_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FMNIST_DATA", str(real_data_dir))
    out = tmp_path / "cmp"
    assert main(["compare", *TINY, "--model", "mlp", "--optimizers", "sgd:1e12", "--seeds",
                 "1", "--out", str(out)]) == 0
    record = json.loads((out / "runs" / "sgd-lr1e+12-seed0.json").read_text())
    assert record["diverged"] and record["test_acc"] is None
    assert json.loads((out / "summary.json").read_text())[0]["diverged"] == 1


def test_compare_needs_optimizers(capsys):
    assert main(["compare", "--epochs", "1"]) == 1
    assert "--optimizers" in capsys.readouterr().err
