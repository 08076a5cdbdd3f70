"""The training loop, the run directory, resume and the bad inputs of train/evaluate/predict."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from fmnist import api, runs
from fmnist.cli import main
from fmnist.config import RunConfig
from fmnist.data.batches import Augment, augment_batch
from fmnist.errors import ConfigError, RunError
from fmnist.loop import TrainingDiverged
from fmnist.schedule import lr_factor

from conftest import cut_short


def toy_config(**train) -> RunConfig:
    base = RunConfig().replace(
        data={"dataset": "toy", "val_size": 100},
        model={"name": "mlp"}, optim={"name": "adam", "lr": 3e-3},
        train={"epochs": 3, "batch_size": 50, "eval_subset": 200, "threads": 1})
    return base.replace(train=train) if train else base


def without_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_run_directory_holds_everything(toy, tmp_path):
    run = api.train(toy_config(), out=tmp_path / "run", plots=False)
    names = {p.name for p in run.dir.iterdir()}
    assert {"config.json", "history.jsonl", "checkpoint.pt", "best.pt", "metrics.json",
            "predictions.csv"} <= names
    assert not [n for n in names if n.endswith(".tmp")]  # nothing half-written
    history = [json.loads(line) for line in (run.dir / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [0, 1, 2, 3]
    assert history[0]["step"] == 0 and history[0]["batch_loss"] is None  # scored before training
    assert history[-1]["step"] == 3 * (500 // 50)
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert metrics["test_acc"] > 0.5  # chance is 0.1: the loop learns
    assert np.array(metrics["confusion"]).sum() == 100
    rows = list(csv.reader((run.dir / "predictions.csv").open()))
    assert rows[0][:3] == ["index", "label", "pred"] and len(rows) == 101
    probs = np.array([[float(v) for v in r[3:]] for r in rows[1:]])
    assert np.allclose(probs.sum(1), 1, atol=1e-4)
    config = json.loads((run.dir / "config.json").read_text())
    assert config["model"]["name"] == "mlp" and "command" in config


def test_without_a_validation_split_every_image_trains_and_the_last_weights_are_scored(toy, tmp_path):
    # best-cpu's refit on all 60,000 images: nothing is held out, so nothing can choose an
    # epoch; the last weights are scored, and the curves and report still come out
    config = toy_config(epochs=2, eval_every=7).replace(data={"val_size": 0})
    run = api.train(config, out=tmp_path / "run", plots=True)
    assert len(run.parts.data.train) == 600 and len(run.parts.data.val) == 0
    history = runs.load_history(run.dir)
    assert [r["step"] for r in history] == [0, 7, 14, 21, 24]  # every 7 steps and at the end
    assert all(r["val_acc"] is None and r["train_acc"] is not None for r in history)
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert metrics["weights"] == "last" and metrics["best_epoch"] is None
    assert metrics["val_acc"] is None and metrics["test_acc"] > 0.5
    names = {p.name for p in run.dir.iterdir()}
    assert runs.BEST not in names and {"curves.png", "report.html"} <= names


def test_same_seed_same_numbers(toy, tmp_path):
    a = api.train(toy_config(), out=tmp_path / "a", plots=False)
    b = api.train(toy_config(), out=tmp_path / "b", plots=False)
    c = api.train(toy_config(seed=1), out=tmp_path / "c", plots=False)
    assert without_time(a.history) == without_time(b.history)
    assert a.metrics["test_loss"] == b.metrics["test_loss"]
    assert without_time(a.history) != without_time(c.history)


def test_resume_after_crash_matches_unbroken_run(toy, tmp_path):
    config = toy_config(epochs=4).replace(model={"name": "cnn"}, data={"augment": True})
    whole = api.train(config, out=tmp_path / "whole", plots=False)

    broken = cut_short(config, tmp_path / "broken", "epoch", 2)
    resumed = api.resume(broken, plots=False)
    assert without_time(resumed.history) == without_time(whole.history)
    assert resumed.metrics["test_loss"] == whole.metrics["test_loss"]


def _edited_checkpoint(folder, edit) -> None:
    """checkpoint.pt rewritten after `edit(payload)` changed it, as a hand or a bug might."""
    payload = runs.load_checkpoint(folder / "checkpoint.pt")
    edit(payload)
    runs.save_checkpoint(folder / "checkpoint.pt", {k: v for k, v in payload.items() if k != "format"})


def _set(path: list, value):
    def edit(payload):
        d = payload
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value
    return edit


@pytest.mark.parametrize("optimizer, edit, needle", [
    ("adam", _set(["optimizer"], "x"), "not an optimizer's state dict"),
    ("adam", _set(["optimizer", "state"], "x"), "not an optimizer's state dict"),
    ("adam", _set(["optimizer", "param_groups", 0, "betas"], "x"), "setting 'betas' is 'x'"),
    ("adam", _set(["optimizer", "param_groups", 0, "weight_decay"], "w"), "setting 'weight_decay'"),
    ("adam", _set(["optimizer", "state", 0, "exp_avg"], torch.zeros(2)), "has shape (2,)"),
    ("nesterov", _set(["optimizer", "state", 1, "momentum_buffer"], torch.zeros(3, 3)), "has shape (3, 3)"),
    ("msvag", _set(["optimizer", "state", 0, "step"], "1"), "'step' of parameter 0 is '1'"),
    ("adam", _set(["history", -1, "val_acc"], "x"), "val_acc is not a number"),
])
def test_a_damaged_checkpoint_is_refused_before_resuming(toy, tmp_path, capsys, optimizer, edit, needle):
    # torch's load_state_dict trusts the optimizer state: a moment of the wrong shape
    # crashed fused Adam's step with a segmentation fault, others raised deep in torch
    config = toy_config(epochs=2).replace(optim={"name": optimizer})
    broken = cut_short(config, tmp_path / "broken", "epoch", 1)
    _edited_checkpoint(broken, edit)
    assert main(["train", "--resume", str(broken), "--no-plots", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fmnist: error: {broken / 'checkpoint.pt'}: ") \
        and needle in err[0], err
    assert not (broken / "metrics.json").exists()


def test_nan_weights_are_refused_by_every_reader(toy, tmp_path, capsys):
    api.train(toy_config(epochs=1), out=tmp_path / "run", plots=False)
    payload = runs.load_checkpoint(tmp_path / "run" / "best.pt")
    payload["model"] = {k: v.fill_(float("nan")) if v.is_floating_point() else v
                        for k, v in payload["model"].items()}
    runs.save_checkpoint(tmp_path / "run" / "best.pt", {k: v for k, v in payload.items() if k != "format"})
    assert main(["evaluate", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.pt: holds NaN or infinite weights" in err[0], err


def test_training_on_an_existing_run_is_refused(toy, tmp_path):
    api.train(toy_config(epochs=1), out=tmp_path / "run", plots=False)
    with pytest.raises(RunError, match="--resume"):
        api.train(toy_config(epochs=1), out=tmp_path / "run", plots=False)


def test_non_finite_loss_stops_with_a_clear_message(toy, tmp_path):
    config = toy_config().replace(optim={"name": "sgd", "lr": 1e12})
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        api.train(config, out=tmp_path / "run", plots=False)
    # the last good checkpoint (epoch 0 at least) is whole and loadable, the divergence recorded
    assert runs.load_checkpoint(tmp_path / "run" / "checkpoint.pt")["history"]
    metrics = runs.read_metrics(tmp_path / "run")
    assert metrics["diverged"] and metrics["test_acc"] is None and metrics["diverged_at"]["epoch"] >= 1


def test_weights_made_infinite_by_the_last_step_never_reach_a_checkpoint(toy, tmp_path):
    # one step: its loss is finite (the initial weights), its update is not; the record after
    # it must stop the run instead of checkpointing infinite weights as the last good ones
    config = toy_config(epochs=1).replace(optim={"name": "sgd", "lr": 1e300},
                                          train={"steps": 1})
    with pytest.raises(TrainingDiverged, match="weights became NaN or infinite"):
        api.train(config, out=tmp_path / "run", plots=False)
    weights = runs.load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_early_stopping_restores_best_weights(toy, tmp_path):
    config = toy_config(epochs=8, patience=1, schedule="constant").replace(
        optim={"name": "sgd", "lr": 1e-9})  # nothing improves after epoch 1
    run = api.train(config, out=tmp_path / "run", plots=False)
    assert run.metrics["stopped_early"] and run.metrics["epochs_run"] < 8
    assert run.metrics["weights"] == "best"


def test_run_load_predict_and_evaluate_agree(toy, tmp_path):
    run = api.train(toy_config(), out=tmp_path / "run", plots=False)
    again = api.Run.load(run.dir)
    m = again.evaluate("test")
    assert m["accuracy"] == pytest.approx(run.metrics["test_acc"])
    probs = again.predict(toy.arrays["test_images"][:5])
    assert probs.shape == (5, 10)
    with pytest.raises(ConfigError):
        again.predict(np.zeros((2, 27, 27), np.uint8))


def test_checkpoint_of_another_model_is_refused(toy, tmp_path):
    run = api.train(toy_config(epochs=1), out=tmp_path / "run", plots=False)
    config = json.loads((run.dir / "config.json").read_text())
    config["model"]["name"] = "logreg"
    (run.dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="'mlp', not 'logreg'"):
        api.Run.load(run.dir)


@pytest.mark.parametrize("argv, needle", [
    (["train", "--epochs", "-1"], "epochs=-1"),
    (["train", "--batch-size", "0"], "batch_size=0"),
    (["train", "--model", "nope"], "unknown model 'nope'; known: "),
    (["train", "--optimizer", "nope"], "unknown optimizer 'nope'; known: "),
    (["train", "--lr", "-1"], "lr=-1"),
    (["train", "--model-arg", "dropout"], "NAME=VALUE"),
    (["evaluate", "no/such/run"], "no such run directory"),
    (["predict", "no/such/run"], "no such run directory"),
    (["train", "--warmup-epochs", "inf"], "must be a finite number"),
    (["train", "--seed", "-1"], "seed=-1"),
    (["train", "--split-seed", "99999999999"], "split_seed=99999999999"),
    (["train", "--patience", "3", "--val-size", "0"], "early stopping watches the validation"),
    (["train", "--model", "mlp", "--model-arg", "widths=3"], "widths"),
    (["train", "--dry-run", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--resume", "some/run", "--epochs", "3"], "drop the other training flags"),
    (["data", "show", "--out", "."], "is a folder"),
    (["train", "--warmup-epochs", "1e308"], "warmup_epochs=1e+308: must be in [0, 1,000,000,000]"),
    (["train", "--epochs", str(10**400)], "epochs="),
    (["train", "--steps", str(10**400), "--dry-run"], "steps="),
    (["train", "--eval-every", str(10**16)], "eval_every="),
    (["train", "--model", "mlp", "--model-arg", "num_classes=-1"], "the data set sets the number of classes"),
    (["train", "--resume", "no/such/run", "--dry-run"], "no such run directory"),
])
def test_bad_input_gives_one_line(argv, needle, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error:") and needle in err[0], err


def test_a_file_given_as_run_directory_is_named_as_a_file(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a run")
    for command in ("evaluate", "predict", "explain"):
        assert main([command, str(tmp_path / "notes.txt")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"fmnist: error: {tmp_path / 'notes.txt'}: is a file; give the run's "
                       "directory (made by `fmnist train`)"], err


def test_dry_runs_refuse_what_the_run_would(toy, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    assert main(["train", "--device", "cuda", "--dry-run"]) == 1  # no GPU: refused, not approved
    assert "no CUDA GPU" in capsys.readouterr().err
    assert main(["compare", "--model", "mlp", "--optimizers", "sgd", "--seeds", "1", "--epochs", "1",
                 "--device", "cuda", "--dry-run"]) == 1
    assert "no CUDA GPU" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(RunConfig().to_dict()))
    assert main(["train", "--resume", str(tmp_path / "run"), "--dry-run"]) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_val_size_larger_than_training_set(toy, capsys):
    assert main(["train", "--dataset", "toy", "--val-size", "600", "--no-plots"]) == 1
    assert "val_size=600" in capsys.readouterr().err


def test_run_dir_without_checkpoint(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(RunConfig().to_dict()))
    assert main(["evaluate", str(tmp_path)]) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_corrupt_checkpoint_is_named(toy, tmp_path, capsys):
    run = api.train(toy_config(epochs=1), out=tmp_path / "run", plots=False)
    (run.dir / "best.pt").write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(run.dir)]) == 1
    assert "best.pt: unreadable checkpoint" in capsys.readouterr().err


def test_lr_schedules():
    total, warm = 100, 10
    for name in ("onecycle", "cosine"):
        f = [lr_factor(name, s, total, warm) for s in range(total)]
        assert f[0] > 0 and f[:warm] == sorted(f[:warm])  # the warm-up rises
        assert max(f) == pytest.approx(1.0) and f[-1] < 0.05  # ...peaks, then decays to ~0
    assert {lr_factor("constant", s, total) for s in range(total)} == {1.0}
    assert [lr_factor("step", s, total) for s in (0, 49, 50, 75)] == [1.0, 1.0, 0.1, 0.01]


def test_augmentations_keep_shape_and_are_seeded():
    x = torch.arange(4 * 28 * 28, dtype=torch.int32).remainder(251).to(torch.uint8).view(4, 28, 28)
    aug = Augment(crop_pad=2, flip=True, erase=0.5)
    a = augment_batch(x, aug, torch.Generator().manual_seed(0))
    b = augment_batch(x, aug, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    flipped = augment_batch(x, Augment(flip=True), torch.Generator().manual_seed(3))
    for i in range(4):  # each image is itself or its mirror image
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    cropped = augment_batch(x, Augment(crop_pad=2), torch.Generator().manual_seed(1))
    centre = cropped[:, 2:-2, 2:-2]  # a shift by at most 2 pixels keeps the centre inside
    for i in range(4):
        windows = [x[i, 2 + dy:26 + dy, 2 + dx:26 + dx] for dy in (-2, -1, 0, 1, 2)
                   for dx in (-2, -1, 0, 1, 2)]
        assert any(torch.equal(centre[i], w) for w in windows)


@pytest.mark.real_data
def test_sigkill_then_resume_matches_unbroken_run(real_data_dir, tmp_path):
    """A run killed by SIGKILL mid-training resumes to the same numbers (real data)."""
    env = {**os.environ, "FMNIST_DATA": str(real_data_dir), "PYTHONUNBUFFERED": "1"}
    flags = ["--model", "mlp", "--train-limit", "3000", "--val-size", "500", "--epochs", "12",
             "--batch-size", "100", "--threads", "1", "--no-plots", "--quiet"]

    def fmnist(*args):
        return [sys.executable, "-m", "fmnist", *args]

    subprocess.run(fmnist("train", *flags, "--out", str(tmp_path / "whole")), env=env,
                   check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(fmnist("train", *flags, "--out", str(killed)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = killed / "history.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run(fmnist("train", "--resume", str(killed), "--no-plots", "--quiet"),
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed = json.loads((killed / "metrics.json").read_text())
    assert resumed["test_loss"] == whole["test_loss"]
    assert resumed["confusion"] == whole["confusion"]


def test_train_cli_draws_figures_and_report(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "toy", "--val-size", "100", "--model", "mlp",
                 "--epochs", "2", "--batch-size", "50", "--threads", "1", "--quiet",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and str(out) in printed
    for name in ("curves.png", "confusion.png", "per_class.png", "predictions.png",
                 "mistakes.png", "report.html"):
        assert (out / name).stat().st_size > 1000, name
    (out / "curves.png").unlink()
    assert main(["plot", str(out)]) == 0  # redrawn from the saved files, no training
    assert (out / "curves.png").exists()
    assert main(["evaluate", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["predict", str(out), "--out", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 101


def test_no_plots_draws_nothing(toy, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "toy", "--val-size", "100", "--model", "logreg",
                 "--epochs", "1", "--threads", "1", "--quiet", "--no-plots",
                 "--out", str(out)]) == 0
    assert not list(out.glob("*.png")) and not (out / "report.html").exists()


def test_predict_on_an_idx_file(toy, tmp_path, capsys):
    from fmnist.data import write_idx

    out = tmp_path / "run"
    api.train(toy_config(epochs=1), out=out, plots=False)
    write_idx(tmp_path / "mine.idx.gz", toy.arrays["test_images"][:7])
    assert main(["predict", str(out), "--images", str(tmp_path / "mine.idx.gz")]) == 0
    rows = (out / "predictions-mine.idx.gz.csv").read_text().splitlines()
    assert len(rows) == 8 and rows[1].split(",")[1] == "-1"  # no true label known
    write_idx(tmp_path / "bad.idx", toy.arrays["test_images"][:3, :20, :20].copy())
    assert main(["predict", str(out), "--images", str(tmp_path / "bad.idx")]) == 1
    assert "(N, 28, 28)" in capsys.readouterr().err


def test_predict_on_pictures(toy, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "run"
    api.train(toy_config(epochs=2), out=out, plots=False)
    # a "photo": the class-3 pattern, dark on a white page, larger than 28x28
    band = 255 - np.kron(toy.arrays["test_images"][3], np.ones((4, 4), np.uint8))
    Image.fromarray(band).save(tmp_path / "photo.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["predict", str(out), "--images", str(tmp_path / "photo.png")]) == 0
    assert "photo.png: class" in capsys.readouterr().out
    assert main(["predict", str(out), "--images", str(tmp_path / "broken.jpg")]) == 1
    assert "broken.jpg: not an image" in capsys.readouterr().err


def test_picture_preparation_matches_the_data_set():
    from fmnist.data.images import prepare

    page = np.full((100, 60), 240, np.uint8)  # a white page
    page[20:80, 10:40] = 30  # a dark garment, taller than wide
    x = prepare(page)
    assert x.shape == (28, 28) and x.dtype == np.uint8
    assert x[:, 0].max() == 0 and x[:, -1].max() == 0  # black background after inversion
    assert x.max() == 255  # full range
    rows = np.flatnonzero(x.max(1) > 0)
    assert rows[-1] - rows[0] + 1 == 28  # the longest edge fills the frame
    cols = np.flatnonzero(x.max(0) > 0)
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1  # centred


def test_compare_refuses_a_folder_of_other_settings(toy, tmp_path, capsys):
    out = str(tmp_path / "cmp")
    base = ["compare", "--dataset", "toy", "--val-size", "100", "--optimizers", "sgd",
            "--seeds", "1", "--epochs", "1", "--threads", "1", "--no-plots", "--out", out]
    assert main([*base, "--model", "logreg"]) == 0
    assert main([*base, "--model", "mlp"]) == 1
    assert "was run with other settings" in capsys.readouterr().err


def test_bad_model_kwarg_leaves_no_run_directory(toy, tmp_path):
    with pytest.raises(ConfigError):
        api.train(toy_config().replace(model={"kwargs": {"nope": 1}}), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_tta_averages_an_image_and_its_mirror():
    from fmnist.data.batches import DeviceData
    from fmnist.evaluate import logits_of
    from fmnist.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn").eval()
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    data = DeviceData(images, np.zeros(6, np.int64), 0.3, 0.35)
    mirrored = DeviceData(images[:, :, ::-1].copy(), np.zeros(6, np.int64), 0.3, 0.35)
    plain, flipped = logits_of(model, data), logits_of(model, mirrored)
    assert torch.allclose(logits_of(model, data, tta=True), (plain + flipped) / 2, atol=1e-5)


def moved(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """uint8 images moved dy rows down and dx columns right, the edge left black (0)."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_tta_shifts_average_the_image_moved_one_pixel_each_way():
    from fmnist.data.batches import DeviceData
    from fmnist.evaluate import logits_of
    from fmnist.models import build_model

    torch.manual_seed(0)
    model = build_model("cnn").eval()
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)

    def logits(imgs: np.ndarray, **kw) -> torch.Tensor:
        return logits_of(model, DeviceData(imgs, np.zeros(6, np.int64), 0.3, 0.35), **kw)
    views = [images, images[:, :, ::-1].copy()] + [moved(images, dy, dx) for dy, dx in
                                                    ((-1, 0), (1, 0), (0, -1), (0, 1))]
    want = sum(logits(v) for v in views) / 6  # the moved edge is black, as in the data set
    assert torch.allclose(logits(images, tta=True, shifts=True), want, atol=1e-5)
    # without the mirror: the image and its four moves
    want = sum(logits(v) for v in [views[0], *views[2:]]) / 5
    assert torch.allclose(logits(images, shifts=True), want, atol=1e-5)
    assert not torch.allclose(logits(images, shifts=True), logits(images), atol=1e-3)


def test_tta_shifts_score_the_test_set_but_never_choose_an_epoch(toy, tmp_path, monkeypatch):
    import fmnist.evaluate as ev
    import fmnist.loop as loop

    calls = {"shifted": 0, "while_choosing": 0}
    real_shifted, real_score = ev.shifted, loop.score

    def counted(*a, **kw):
        calls["shifted"] += 1
        return real_shifted(*a, **kw)

    def score(*a, **kw):  # per-epoch scoring: validation accuracy chooses the epoch
        before = calls["shifted"]
        try:
            return real_score(*a, **kw)
        finally:
            calls["while_choosing"] += calls["shifted"] - before
    monkeypatch.setattr(ev, "shifted", counted)
    monkeypatch.setattr(loop, "score", score)
    run = api.train(toy_config(epochs=2, tta=True, tta_shifts=True), out=tmp_path / "run",
                    plots=False)
    assert calls["while_choosing"] == 0 and calls["shifted"] > 0  # the test set: shifted
    from fmnist.data.batches import DeviceData

    images, labels = toy.arrays["test_images"], toy.arrays["test_labels"]
    data = DeviceData(images, labels, run.facts.mean, run.facts.std)
    want = torch.softmax(ev.logits_of(run.model, data, autocast=run.parts.autocast, tta=True,
                                      shifts=True).double(), 1)
    assert np.allclose(run.predict(images), want.numpy(), atol=1e-6)
    assert run.metrics["test_acc"] == pytest.approx(
        float((want.argmax(1) == data.labels).float().mean()))


def test_tta_scores_validation_after_each_epoch_but_not_before_the_first_step(toy, tmp_path,
                                                                              monkeypatch):
    import fmnist.loop as loop

    seen = []  # (split length, tta) of each per-epoch scoring
    real = loop.loss_and_accuracy

    def spy(model, split, batch_size, autocast, tta=False, shifts=False):
        seen.append((len(split), tta))
        return real(model, split, batch_size, autocast, tta, shifts)
    monkeypatch.setattr(loop, "loss_and_accuracy", spy)
    run = api.train(toy_config(epochs=2, tta=True), out=tmp_path / "run", plots=False)
    n_val = len(run.parts.data.val)
    val_views = [tta for n, tta in seen if n == n_val]
    assert n_val and val_views == [False, True, True]  # step 0, then epochs 1 and 2
    # the untrained model's record is still a full one, at chance for a 10-class toy
    assert run.history[0]["step"] == 0 and run.history[0]["val_acc"] is not None


def _edited_config(folder, part: str, **values) -> None:
    path = folder / "config.json"
    saved = json.loads(path.read_text())
    saved[part].update(values)
    path.write_text(json.dumps(saved))


@pytest.mark.parametrize("part, values, needle", [
    ("train", {"epochs": 1}, "train.epochs is 1 but the run's checkpoint was trained with 3"),
    ("train", {"batch_size": 40}, "train.batch_size is 40 but the run's checkpoint was trained with 50"),
    ("data", {"val_size": 200}, "data.val_size is 200 but the run's checkpoint was trained with 100"),
    ("data", {"split_seed": 1}, "data.split_seed is 1"),
    ("optim", {"lr": 0.1}, "optim.lr is 0.1"),
    ("train", {"precision": "bf16"},
     'train.precision is "bf16" but the run\'s checkpoint was trained with "auto"'),
])
def test_resume_refuses_settings_edited_since_the_checkpoint(toy, tmp_path, capsys, part, values, needle):
    # a run must go on with the settings it was trained with: an edited epoch count, batch
    # size or split would continue as another run while its files describe the old one
    broken = cut_short(toy_config(epochs=3), tmp_path / "broken", "epoch", 1)
    history = (broken / "history.jsonl").read_text()
    _edited_config(broken, part, **values)
    assert main(["train", "--resume", str(broken), "--no-plots", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fmnist: error: {broken / 'config.json'}: ") \
        and needle in err[0] and "restore the file written by `fmnist train`" in err[0], err
    assert (broken / "history.jsonl").read_text() == history  # nothing trained
    assert not (broken / "metrics.json").exists()


def test_a_finished_run_is_not_lengthened_by_an_edited_epoch_count(toy, tmp_path, capsys):
    # the one-cycle rate would climb back up from the end of the schedule it finished
    run = api.train(toy_config(epochs=2), out=tmp_path / "run", plots=False)
    metrics = (run.dir / "metrics.json").read_text()
    _edited_config(run.dir, "train", epochs=4)
    assert main(["train", "--resume", str(run.dir), "--no-plots", "--quiet"]) == 1
    assert "train.epochs is 4 but the run's checkpoint was trained with 2" in capsys.readouterr().err
    assert (run.dir / "metrics.json").read_text() == metrics


def test_resume_may_run_on_another_machine(toy, tmp_path):
    # cores, device and the data's folder are the machine's, not the run's
    config = toy_config(epochs=2)
    whole = api.train(config, out=tmp_path / "whole", plots=False)
    broken = cut_short(config, tmp_path / "broken", "epoch", 1)
    _edited_config(broken, "train", threads=2, device="cpu")
    _edited_config(broken, "data", data_dir=str(tmp_path / "moved"))
    resumed = api.resume(broken, plots=False)
    assert resumed.metrics["test_loss"] == whole.metrics["test_loss"]


def test_a_checkpoint_without_its_settings_resumes_on_its_split_only(toy, tmp_path, capsys):
    # checkpoints written before they recorded the settings: the split sizes and steps per
    # epoch config.json resolved are what can still be compared
    config = toy_config(epochs=2)
    whole = api.train(config, out=tmp_path / "whole", plots=False)
    broken = cut_short(config, tmp_path / "broken", "epoch", 1)
    _edited_checkpoint(broken, lambda payload: payload.pop("settings"))
    original = (broken / "config.json").read_text()
    for part, values, needle in [("train", {"batch_size": 40}, "12 steps per epoch, but the run was "
                                  "trained with 10 (resolved.steps_per_epoch)"),
                                 ("data", {"val_size": 200}, "400 training images, but the run was "
                                  "trained with 500 (resolved.train_size)")]:
        _edited_config(broken, part, **values)
        assert main(["train", "--resume", str(broken), "--no-plots", "--quiet"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        (broken / "config.json").write_text(original)
    assert api.resume(broken, plots=False).metrics["test_loss"] == whole.metrics["test_loss"]


@pytest.mark.parametrize("parts, needle", [
    ({"train": {"batch_size": 10.5}}, "train.batch_size=10.5: must be int"),
    ({"train": {"epochs": 1.5}}, "train.epochs=1.5: must be int"),
    ({"train": {"epochs": True}}, "train.epochs=True: must be int"),
    ({"train": {"epochs": "3"}}, "train.epochs='3': must be int"),
    ({"optim": {"lr": "0.1"}}, "optim.lr='0.1': must be float or None"),
    ({"data": {"train_limit": 600.0}}, "data.train_limit=600.0: must be int or None"),
    ({"model": {"whiten": 1}}, "model.whiten=1: must be bool"),
    ({"model": {"kwargs": [1]}}, "model.kwargs=[1]: must be dict"),
    ({"train": {"epoch": 3}}, "train.epoch is not a setting"),
    ({"training": {"epochs": 3}}, "replace(training=...)"),
])
def test_a_config_built_in_python_is_type_checked_before_any_folder(toy, tmp_path, parts, needle):
    # as config.json is (from_dict): a float batch size failed deep in the loop after the
    # run's folder was made, a float epoch count trained a run `evaluate` then refused
    with pytest.raises(ConfigError) as info:
        api.train(toy_config().replace(**parts), out=tmp_path / "d", plots=False)
    assert needle in str(info.value), info.value
    assert not (tmp_path / "d").exists()


def test_a_gpu_run_resumes_on_a_cpu(toy, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    # the device is the machine's: a run cut short on a GPU goes on here (and --device
    # cannot be given beside --resume)
    broken = cut_short(toy_config(epochs=2), tmp_path / "broken", "epoch", 1)
    config = json.loads((broken / "config.json").read_text())
    config["train"]["device"] = "cuda"
    (broken / "config.json").write_text(json.dumps(config))
    lines = []
    resumed = api.resume(broken, plots=False, log=lines.append)
    assert resumed.metrics["epochs_run"] == 2 and resumed.metrics["device"] == "cpu"
    assert "no CUDA GPU here: the run goes on on the CPU" in lines
