"""A step budget, evaluation every N steps (a paper's protocol), and input scaling."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fmnist import api, runs
from fmnist.cli import main

from conftest import cut_short
from test_train import toy_config, without_time


def test_step_budget_and_eval_cadence_are_exact(toy, tmp_path):
    # 500 training images, batch 50: 10 steps an epoch; 23 steps end mid-epoch 3
    config = toy_config(steps=23, eval_every=5, schedule="constant")
    run = api.train(config, out=tmp_path / "run", plots=False)
    steps = [r["step"] for r in run.history]
    assert steps == [0, 5, 10, 15, 20, 23]  # every 5 steps, and the end of the budget
    assert [r["epoch"] for r in run.history] == [0, 0.5, 1, 1.5, 2, 2.3]
    assert run.metrics["steps"] == 23 and run.metrics["epochs_run"] == 2.3
    assert run.metrics["best_step"] in steps and run.metrics["best_epoch"] == run.history[
        steps.index(run.metrics["best_step"])]["epoch"]
    assert runs.load_history(run.dir) == run.history  # read back in step order


def test_a_budget_in_steps_is_the_same_as_in_epochs_when_they_agree(toy, tmp_path):
    by_epochs = api.train(toy_config(epochs=2), out=tmp_path / "a", plots=False)
    by_steps = api.train(toy_config(epochs=99, steps=20), out=tmp_path / "b", plots=False)
    assert without_time(by_epochs.history) == without_time(by_steps.history)


def test_resume_mid_epoch_matches_an_unbroken_run(toy, tmp_path):
    config = toy_config(steps=27, eval_every=4).replace(
        model={"name": "mlp", "kwargs": {"dropout": 0.3}}, data={"augment": True})
    whole = api.train(config, out=tmp_path / "whole", plots=False)

    broken = cut_short(config, tmp_path / "broken", "step", 12)  # mid-epoch 2 (10 steps an epoch)
    resumed = api.resume(broken, plots=False)
    assert without_time(resumed.history) == without_time(whole.history)
    assert resumed.metrics["test_loss"] == whole.metrics["test_loss"]


def test_unit_scaling_round_trips_through_config_and_predict(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "toy", "--val-size", "100", "--model", "mlp", "--epochs",
                 "1", "--threads", "1", "--scaling", "unit", "--precision", "fp32", "--no-plots", "--quiet",
                 "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["data"]["scaling"] == "unit"
    facts = runs.load_facts(out)
    assert (facts.scaling, facts.mean, facts.std) == ("unit", 0.0, 1.0)
    run = api.Run.load(out)
    images = toy.arrays["test_images"][:8]
    # what predict feeds the model is pixels / 255, exactly
    manual = run.model(api.torch.from_numpy(images).float().div(255).unsqueeze(1))
    assert np.allclose(run.predict(images), manual.softmax(1).detach().numpy(), atol=1e-5)
    standard = api.train(toy_config(epochs=1), out=tmp_path / "std", plots=False)
    assert standard.facts.scaling == "standard" and standard.facts.std != 1.0


@pytest.mark.parametrize("argv, needle", [
    (["--steps", "0"], "steps=0"),
    (["--eval-every", "0"], "eval_every=0"),
    (["--scaling", "minmax"], None),  # argparse: invalid choice, exit 2
])
def test_bad_budgets(argv, needle, capsys):
    if needle is None:
        with pytest.raises(SystemExit):
            main(["train", "--dry-run", *argv])
        return
    assert main(["train", "--dry-run", *argv]) == 1
    assert needle in capsys.readouterr().err
