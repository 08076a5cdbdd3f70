"""`fmnist data audit` and `train --exclude-test-overlap` on a synthetic data set with a
planted duplicate, a planted train/test copy, a planted near copy and a planted wrong label."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from fmnist import api, data
from fmnist.cli import main
from fmnist.crossval import CrossValConfig, stratified_folds
from fmnist.data.audit import AuditConfig, run_audit
from fmnist.data.duplicates import exact_groups, in_other, nearest_train

from conftest import learnable
from test_plots import assert_drawn
from test_train import toy_config

DUP, COPY, NEAR, FLIP = (5, 17), (40, 3), (50, 8), 7  # train, train / train, test / train, test / train


@pytest.fixture
def planted(make_synthetic_source, tmp_path, monkeypatch):
    """The toy data set (class = a bright band's row) with one of each finding planted."""
    rng = np.random.default_rng(2)
    tr_x, tr_y = learnable(600, rng)
    te_x, te_y = learnable(100, rng)
    tr_x[DUP[1]], tr_y[DUP[1]] = tr_x[DUP[0]], tr_y[DUP[0]]  # a duplicate within train
    te_x[COPY[1]], te_y[COPY[1]] = tr_x[COPY[0]], tr_y[COPY[0]]  # a training image in the test set
    te_x[NEAR[1]] = np.clip(tr_x[NEAR[0]].astype(int) + rng.integers(-2, 3, (28, 28)), 0, 255)
    te_y[NEAR[1]] = tr_y[NEAR[0]]  # ... and one a grey level or two off
    tr_y[FLIP] = (tr_y[FLIP] + 1) % 10  # a wrong label
    monkeypatch.setenv("FMNIST_DATA", str(tmp_path / "data"))
    syn = make_synthetic_source(name="planted", folder=tmp_path / "data" / "planted", overrides={
        "train_images": tr_x, "train_labels": tr_y, "test_images": te_x, "test_labels": te_y})
    data.DATASETS.add("planted", syn.source)
    yield syn
    data.DATASETS.remove("planted")


FAST = AuditConfig(gallery=6, cv=CrossValConfig(folds=3, epochs=8))


def test_the_audit_finds_what_was_planted_and_caches_it(planted, tmp_path):
    result = run_audit("planted", cfg=FAST, out=tmp_path / "out")
    r = result.report
    assert not result.cached
    assert [(g["train"], g["test"]) for g in r["exact"]["train"]] == [(list(DUP), [])]
    assert [(g["train"], g["test"], g["labels_agree"]) for g in r["exact"]["shared"]] == [([COPY[0]], [COPY[1]], True)]
    assert r["exact"]["test"] == []
    pairs = {(p["train"], p["test"]): p["distance"] for p in r["near"]["pairs"]}
    assert set(pairs) == {COPY, NEAR}  # random images are far apart; the two copies are not
    assert pairs[COPY] == 0 and 0 < pairs[NEAR] < 0.2  # +-2 grey levels: 1.4 / 255 * 28
    suspects = r["labels"]["train"]
    assert suspects[0]["index"] == FLIP and suspects[0]["given"] != suspects[0]["suggested"]
    assert len(suspects) <= 3  # clean images are not accused wholesale
    on_disk = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert on_disk == r
    assert_drawn(tmp_path / "out" / "audit.png")

    data.DATASETS.get("planted")  # a second call reads the cache and loads no data at all
    t0 = time.perf_counter()
    again = run_audit("planted", cfg=FAST)
    assert again.cached and again.report == r and time.perf_counter() - t0 < 1.0
    cached = again.folder / "audit.json"  # a cache edited by hand is audited afresh
    cached.write_text(json.dumps({**r, "near": {"pairs": "edited"}}))
    redone = run_audit("planted", cfg=FAST)
    assert not redone.cached and json.loads(cached.read_text()) == redone.report
    assert {k: v for k, v in redone.report.items() if k != "seconds"} == {k: v for k, v in r.items() if k != "seconds"}
    other = run_audit("planted", cfg=AuditConfig(near_threshold=0.0, gallery=6, cv=FAST.cv))
    assert not other.cached  # other settings, another audit
    assert [(p["train"], p["test"]) for p in other.report["near"]["pairs"]] == [COPY]


def test_the_command_prints_the_table(planted, tmp_path, capsys):
    argv = ["data", "audit", "--dataset", "planted", "--folds", "3", "--cv-epochs", "8",
            "--gallery", "4", "--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "exact copies shared by train and test" in out and "audited in" in out
    assert main(argv) == 0
    assert "read from the cache" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["--out", "FILE"], "is a file"),
    (["--folds", "1"], "folds=1"),
    (["--near-threshold", "-1"], "near_threshold"),
])
def test_bad_audit_flags_are_one_line(planted, tmp_path, capsys, argv, needle):
    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / a) if a == "FILE" else a for a in argv]
    assert main(["data", "audit", "--dataset", "planted", *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error: ") and needle in err[0]


def test_training_without_the_test_overlap_records_it(planted, tmp_path):
    config = toy_config(epochs=1).replace(data={"dataset": "planted", "exclude_test_overlap": True})
    run = api.train(config, out=tmp_path / "run", plots=False)
    saved = json.loads((run.dir / "config.json").read_text())
    assert saved["data"]["exclude_test_overlap"] is True
    assert saved["resolved"]["test_overlap_excluded"] == 1
    assert saved["resolved"]["train_size"] + saved["resolved"]["val_size"] == 599


def test_duplicates_and_nearest_neighbours_against_brute_force():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    b = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    b[4] = a[9]
    assert np.flatnonzero(in_other(a, b)).tolist() == [9]
    groups = exact_groups(a, np.zeros(50, int), b, np.ones(20, int))
    assert [g.to_dict() for g in groups["shared"]] == [{"train": [9], "test": [4], "labels": [0, 1], "labels_agree": False}]
    index, dist = nearest_train(b, a, chunk=7)
    brute = np.sqrt(((b.reshape(20, 1, -1) / 255.0 - a.reshape(1, 50, -1) / 255.0) ** 2).sum(-1))
    assert index.tolist() == brute.argmin(1).tolist()
    assert np.allclose(dist, brute.min(1)) and dist[4] == 0


def test_folds_are_stratified_and_seeded():
    labels = np.arange(100) % 10
    folds = stratified_folds(labels, 5, seed=3)
    assert (np.bincount(folds) == 20).all()
    assert all((np.bincount(labels[folds == k]) == 2).all() for k in range(5))
    assert (folds == stratified_folds(labels, 5, seed=3)).all()
