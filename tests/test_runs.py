"""The run directory as the contract: what config.json records, safe checkpoints, nothing
left behind by a run that cannot start, and the CLI derived from the configs."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle

import numpy as np
import pytest
import torch

from fmnist import api, runs
from fmnist.build import build, check
from fmnist.cli import main
from fmnist.config import PARTS, RunConfig
from fmnist.data import DATASETS, write_idx
from fmnist.errors import RunError
from fmnist.models import MODELS, register_model
from fmnist.recipes import RECIPES

from conftest import FILENAMES, learnable

THREE = ("circle", "square", "cross")


@pytest.fixture
def three(make_synthetic_source, tmp_path, monkeypatch):
    """A learnable 3-class data set with no registered pixel statistics, as 'three'."""
    rng = np.random.default_rng(3)
    tr_x, tr_y = learnable(300, rng, classes=3)
    te_x, te_y = learnable(60, rng, classes=3)
    monkeypatch.setenv("FMNIST_DATA", str(tmp_path / "data"))
    syn = make_synthetic_source(name="three", folder=tmp_path / "data" / "three", class_names=THREE,
                                overrides={"train_images": tr_x, "train_labels": tr_y,
                                           "test_images": te_x, "test_labels": te_y})
    DATASETS.add("three", syn.source)
    yield syn
    DATASETS.remove("three")


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error: "), err
    return err[0]


def test_three_classes_train_evaluate_predict_report(three, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "three", "--val-size", "60", "--model", "mlp", "--optimizer",
                 "adam", "--lr", "3e-3", "--epochs", "3", "--batch-size", "30", "--threads", "1",
                 "--quiet", "--out", str(out)]) == 0
    facts = runs.load_facts(out)
    assert facts.num_classes == 3 and facts.class_names == THREE
    assert facts.model_args == {"num_classes": 3} and 0 < facts.mean < 1 and facts.std > 0
    assert (facts.train_size, facts.val_size, facts.test_size) == (240, 60, 60)
    metrics = runs.read_metrics(out)
    assert len(metrics["confusion"]) == 3 and metrics["test_acc"] > 0.6  # chance: 1/3
    # scoring the test split again reads the test split, never the training images
    real_load = api.load

    def test_split_only(name, split, **kw):
        assert split == "test", "the training split was loaded"
        return real_load(name, split, **kw)

    monkeypatch.setattr(api, "load", test_split_only)
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    assert f"test accuracy {100 * metrics['test_acc']:.2f}%" in capsys.readouterr().out
    assert main(["plot", str(out)]) == 0 and (out / "mistakes.png").exists()
    # the data set is gone: predicting pictures needs only the run directory
    for role in FILENAMES:
        (three.folder / FILENAMES[role]).unlink()
    write_idx(tmp_path / "mine.idx", three.arrays["test_images"][:4])
    assert main(["predict", str(out), "--images", str(tmp_path / "mine.idx")]) == 0
    rows = (out / "predictions-mine.idx.csv").read_text().splitlines()
    assert rows[0] == "index,label,pred,p0,p1,p2" and len(rows) == 5
    run = api.Run.load(out)
    assert np.allclose(run.predict(three.arrays["test_images"][:4]).sum(1), 1)
    assert main(["report", str(out)]) == 0 and "circle" in (out / "report.html").read_text()


class Payload:
    """Unpickling this creates the marker file: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_checkpoint_that_would_run_code_is_refused_by_every_command(toy, tmp_path, capsys, how):
    from test_train import toy_config

    out = tmp_path / "run"
    api.train(toy_config(epochs=1), out=out, plots=False)
    marker = tmp_path / "pwned"
    for name in ("best.pt", "checkpoint.pt"):
        evil = {"format": 1, "model_name": "mlp", "model": Payload(marker), "history": [], "step": 0}
        if how == "torch.save":
            torch.save(evil, out / name)
        else:
            (out / name).write_bytes(pickle.dumps(evil))
    capsys.readouterr()
    for argv in (["evaluate", str(out)], ["predict", str(out)], ["train", "--resume", str(out)]):
        assert main(argv) == 1, argv
        line = one_error_line(capsys)
        assert ".pt: " in line and ("refused" in line or "unreadable" in line), line
        assert not marker.exists(), argv
    with pytest.raises(Exception):
        api.Run.load(out)
    assert not marker.exists()


def test_a_checkpoint_that_is_a_folder_names_the_fix(toy, tmp_path, capsys):
    from test_train import toy_config

    out = tmp_path / "run"
    api.train(toy_config(epochs=1), out=out, plots=False)
    (out / "best.pt").unlink()
    (out / "best.pt").mkdir()
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 1
    line = one_error_line(capsys)
    assert line.startswith(f"fmnist: error: {out / 'best.pt'}: not a checkpoint we read") and \
        line.endswith("; remove it to score checkpoint.pt (the last epoch's weights) instead, "
                      "or train again"), line
    (out / "best.pt").rmdir()  # as the message says: evaluate then reads checkpoint.pt
    assert main(["evaluate", str(out)]) == 0


def test_checkpoints_hold_only_safe_types(toy, tmp_path):
    from test_train import toy_config

    run = api.train(toy_config(epochs=1).replace(optim={"name": "msvag"}), out=tmp_path / "run", plots=False)
    for name in ("checkpoint.pt", "best.pt"):  # loads under weights_only=True
        assert runs.load_checkpoint(run.dir / name)["model_name"] == "mlp"


def test_a_run_that_cannot_start_leaves_nothing(toy, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, needle in [
        (["--dataset", "toy", "--val-size", "600"], "val_size=600"),  # all 600 images
        (["--data-dir", str(empty)], "empty"),  # no data found there
        (["--model", "mlp", "--model-arg", "nope=1"], "nope"),
    ]:
        assert main(["train", *argv, "--no-plots", "--quiet", "--runs-dir", str(tmp_path / "runs")]) == 1
        assert needle in one_error_line(capsys)
        assert not (tmp_path / "runs").exists(), argv


def test_augmentation_follows_the_model_not_its_name(toy):
    @register_model("tmp-mlp", "a newly registered MLP")
    def tmp_mlp(num_classes: int = 10) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, num_classes))

    try:
        config = RunConfig().replace(data={"dataset": "toy", "val_size": 100})
        assert check(config.replace(model={"name": "tmp-mlp"})).augment is False
        assert check(config.replace(model={"name": "cnn"})).augment is True
        assert check(config.replace(model={"name": "cnn"}, data={"augment": False})).augment is False
        parts = build(config.replace(model={"name": "tmp-mlp"}))
        assert parts.augment is None and parts.data is not None
    finally:
        MODELS.remove("tmp-mlp")


@pytest.mark.parametrize("edit, needle", [
    (lambda c: [c], "must be a JSON object"),
    (lambda c: {**c, "train": {**c["train"], "epochs": 2.5}}, "train.epochs=2.5: must be int"),
    (lambda c: {**c, "train": {**c["train"], "epochs": True}}, "train.epochs=True"),
    (lambda c: {**c, "model": {**c["model"], "kwargs": [1, 2]}}, "model.kwargs"),
    (lambda c: {**c, "model": "mlp"}, "'model' must be an object"),
    (lambda c: {**c, "optim": {**c["optim"], "lr": -1.0}}, "optim.lr=-1.0"),
    (lambda c: {**c, "train": {**c["train"], "nope": 1}}, "train.nope is not a setting"),
    (lambda c: {**c, "resolved": {**c["resolved"], "num_classes": 3}}, "resolved: inconsistent"),
    (lambda c: {**c, "resolved": "x"}, "resolved"),
])
def test_hand_edited_config_is_named(toy, tmp_path, capsys, edit, needle):
    from test_train import toy_config

    run = api.train(toy_config(epochs=1), out=tmp_path / "run", plots=False)
    path = run.dir / "config.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    capsys.readouterr()
    for argv in (["evaluate", str(run.dir)], ["train", "--resume", str(run.dir)]):
        assert main(argv) == 1
        line = one_error_line(capsys)
        assert "config.json" in line and needle in line, line


def test_every_config_field_has_a_flag_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    for part, cls in PARTS.items():
        for f in dataclasses.fields(cls):
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            assert flag in text, flag
    assert "(default: 4)" in text and "(default: 0.4)" in text  # the default recipe's epochs, lr
    assert "(default: 0.25)" in text  # and its --hard-fraction
    assert "(default: onecycle)" in text


def test_flags_override_only_what_is_given(tmp_path, capsys):
    assert main(["train", "--dry-run", "--epochs", "3", "--no-flip", "--clip-grad", "1",
                 "--model-arg", "dropout=0.1", "--data-dir", "rel"]) == 0
    config = RunConfig.from_dict(json.loads(capsys.readouterr().out))
    assert config == RECIPES.get("default").config().replace(
        train={"epochs": 3, "clip_grad": 1.0}, data={"flip": False, "data_dir": os.path.abspath("rel")},
        model={"kwargs": {"dropout": 0.1}})
    assert main(["train", "--dry-run", "--clip-grad", "none", "--optimizer", "adam"]) == 0
    config = RunConfig.from_dict(json.loads(capsys.readouterr().out))
    assert config.train.clip_grad is None and config.optim.lr is None  # adam's own default


def test_old_run_without_resolved_facts(toy, tmp_path):
    """A config.json from before facts were recorded: the registry's pixel statistics are
    used where the data set has them; 'toy' has none, so it is refused by name."""
    from test_train import toy_config

    run = api.train(toy_config(epochs=1), out=tmp_path / "run", plots=False)
    saved = json.loads((run.dir / "config.json").read_text())
    del saved["resolved"]
    (run.dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RunError, match="no resolved input scaling"):
        api.Run.load(run.dir)


def test_a_missing_gpu_is_not_blamed_on_config_json(toy, tmp_path, capsys):
    import torch

    from test_train import toy_config

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    run = api.train(toy_config(epochs=1), out=tmp_path / "run", plots=False)
    capsys.readouterr()
    assert main(["evaluate", str(run.dir), "--device", "cuda"]) == 1
    line = one_error_line(capsys)
    assert "no CUDA GPU" in line and "config.json" not in line, line


def test_a_run_on_a_data_set_registered_by_its_program_loads_without_it(toy, tmp_path, capsys):
    from fmnist.data import DATASETS
    from test_train import toy_config

    run = api.train(toy_config(epochs=1), out=tmp_path / "run", plots=False)
    DATASETS.remove("toy")  # a fresh process of another program: "toy" is unknown there
    try:
        loaded = api.Run.load(run.dir)  # its own facts suffice to rebuild and predict
        assert loaded.facts.class_names == run.facts.class_names
        capsys.readouterr()
        assert main(["evaluate", str(run.dir)]) == 1  # scoring needs the data set itself
        line = one_error_line(capsys)
        assert line.startswith(f"fmnist: error: {run.dir / 'config.json'}: unknown data set 'toy'"), line
    finally:
        DATASETS.add("toy", toy.source)


def test_an_empty_set_of_files_writes_nothing(tmp_path):
    from fmnist.fsutil import atomic_write_files

    assert atomic_write_files({}) == [] and list(tmp_path.iterdir()) == []
