"""`fmnist data audit` and `train --exclude-test-overlap` on a synthetic data set with a
planted duplicate, a planted train/test copy, a planted near copy and a planted wrong label."""
from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest

from fmnist import api, data
from fmnist.cli import main
from fmnist.crossval import CrossValConfig, stratified_folds
from fmnist.data import audit as A
from fmnist.data.audit import AuditConfig, run_audit, summary_table
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


def _refuse(what: str):
    def refuse(*_a, **_k):
        raise AssertionError(f"{what} was called")
    return refuse


def _same(a: dict, b: dict) -> bool:
    """Equal but for the timings and the PNG's checksum (the PNG's bytes were seen to differ
    between two processes drawing the same report, so they are not compared)."""
    def kept(r: dict) -> dict:
        return {k: v for k, v in r.items() if k not in ("seconds", "png_sha256")}
    return kept(a) == kept(b)


def test_the_audit_finds_what_was_planted_and_caches_it(planted, tmp_path, monkeypatch):
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
    assert r["machine"]["precision"] == "fp32" and r["machine"]["device"] in ("cpu", "cuda")

    with monkeypatch.context() as m:  # a second call reads the cache: no data loaded, no training
        m.setattr(A, "load", _refuse("load"))
        m.setattr(A, "out_of_sample", _refuse("out_of_sample"))
        t0 = time.perf_counter()
        again = run_audit("planted", cfg=FAST)
    assert again.cached and again.report == r and time.perf_counter() - t0 < 1.0
    from fmnist.errors import DataNotFoundError  # a typo'd --data-dir is reported, cache or not
    for wrong in (tmp_path / "typo", tmp_path / "out" / "audit.json"):
        with pytest.raises(DataNotFoundError, match="--data-dir .*(no such folder|is a file)"):
            run_audit("planted", data_dir=wrong, cfg=FAST)
    cached, png = again.folder / "audit.json", again.folder / "audit.png"
    cached.write_text(json.dumps({**r, "near": {"pairs": "edited"}}))  # edited by hand: afresh
    redone = run_audit("planted", cfg=FAST)
    assert not redone.cached and json.loads(cached.read_text()) == redone.report and _same(redone.report, r)

    # an audit of other settings killed between its audit.png and its audit.json leaves its
    # PNG beside this audit's json: the json's sha256 of the PNG no longer matches
    written = []

    def killed(_path, report):
        written.append(report)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(A, "atomic_write_json", killed)
        with pytest.raises(KeyboardInterrupt):
            run_audit("planted", cfg=AuditConfig(near_threshold=0.0, gallery=6, cv=FAST.cv))
    other = written[0]  # other settings, another audit
    assert other["key"] != r["key"] and [(p["train"], p["test"]) for p in other["near"]["pairs"]] == [COPY]
    assert png.read_bytes() != (tmp_path / "out" / "audit.png").read_bytes()  # the other one's
    swapped = run_audit("planted", cfg=FAST)
    assert not swapped.cached and _same(swapped.report, r)
    assert hashlib.sha256(png.read_bytes()).hexdigest() == swapped.report["png_sha256"]  # drawn again


def test_a_missing_cleanlab_stops_before_any_data_is_loaded(planted, capsys, monkeypatch):
    import fmnist.extras

    real = fmnist.extras.import_module
    monkeypatch.setattr(fmnist.extras, "import_module", lambda m: (_ for _ in ()).throw(ImportError(m))
                        if m.startswith("cleanlab") else real(m))
    monkeypatch.setattr(A, "load", _refuse("load"))
    assert main(["data", "audit", "--dataset", "planted"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cleanlab" in err[0] and "'fmnist[explain]'" in err[0], err


def test_the_near_row_counts_distinct_images_and_leaves_exact_copies_out():
    def pair(test: int, train: int, distance: float) -> dict:
        return {"test": test, "train": train, "distance": distance, "labels_agree": test != 4}

    report = {"title": "T", "sizes": {"train": 9, "test": 9}, "settings": {"cv": {"model": "mlp"}},
              "exact": {"train": [], "test": [],
                        "shared": [{"train": [7], "test": [1], "labels_agree": True}]},
              "near": {"threshold": 0.75, "pairs": [pair(1, 7, 0.0), pair(2, 3, 0.1), pair(4, 3, 0.2),
                                                     pair(5, 6, 0.3)]},
              "labels": {"train": [], "test": [], "cv_accuracy": 0.9, "test_accuracy": 0.9}}
    rows = {line[:54].strip(): line[54:].split() for line in summary_table(report).splitlines()[2:-1]}
    assert rows["exact copies shared by train and test"] == ["1", "2", "0"]
    # tests 2, 4, 5 and trains 3 (twice) and 6; the exact copy (1, 7) is the row above's
    assert rows["near duplicates test~train (0 < L2 <= 0.75)"] == ["3", "5", "1"]


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
    (["--folds", "1"], "--folds 1"),  # named by its flag, as --cv-epochs and --cv-seed are
    (["--near-threshold", "-1"], "near_threshold"),
    (["--cv-model", "nope"], "give --cv-model one of"),  # before the scans, not after
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
