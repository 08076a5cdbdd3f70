"""Loss-weighted sampling (--hard-fraction): the draw, the loop's use of it, and its resume."""
from __future__ import annotations

import math

import pytest
import torch

from fmnist import api, runs
from fmnist.cli import main
from fmnist.config import RunConfig
from fmnist.data.batches import hard_order
from fmnist.errors import ConfigError

from conftest import cut_short
from test_train import _edited_checkpoint, toy_config, without_time


def test_a_pass_has_no_repeats_and_favours_the_hard_images():
    n = 1000
    losses = torch.linspace(0.0, 1.0, n)  # image n-1 the hardest, image 0 the easiest
    gen = torch.Generator().manual_seed(0)
    order = hard_order(losses, 0.25, 100.0, 40 * n, gen)  # 160 passes of 250 images
    assert order.shape == (40 * n,) and order.dtype == torch.int64
    for p in range(0, len(order), 250):  # without replacement within each pass
        assert len(set(order[p:p + 250].tolist())) == 250
    counts = torch.bincount(order, minlength=n).float()
    # weights 100 ** (-rank / n): the hardest tenth is drawn in most passes, the easiest
    # seldom, but nearly every image now and then (and none more than once a pass)
    assert counts[-100:].mean() > 100 and counts[:100].mean() < 10
    assert (counts > 0).float().mean() > 0.95 and counts.max() <= 160


def test_pressure_one_is_a_uniform_draw_and_unseen_images_come_first():
    losses = torch.full((400,), math.inf)
    losses[:200] = torch.rand(200)
    gen = torch.Generator().manual_seed(1)
    counts = torch.bincount(hard_order(losses, 0.5, 1.0, 400 * 200, gen), minlength=400).float()
    assert (counts - 200).abs().max() < 40  # each drawn in half the passes, about
    # with pressure, images never trained on (inf) rank hardest
    hard = torch.bincount(hard_order(losses, 0.5, 1e3, 400 * 50, gen), minlength=400).float()
    assert hard[200:].mean() > 2 * hard[:200].mean()


def test_a_count_that_is_not_whole_passes_and_the_same_draw_from_the_same_seed():
    losses = torch.rand(100)
    a = hard_order(losses, 0.3, 10.0, 77, torch.Generator().manual_seed(5))
    b = hard_order(losses, 0.3, 10.0, 77, torch.Generator().manual_seed(5))
    assert len(a) == 77 and torch.equal(a, b)
    assert len(set(a[:30].tolist())) == 30  # a pass: 30 images


def test_training_with_it_draws_the_hard_images_and_records_their_losses(toy, tmp_path):
    config = toy_config(epochs=3, hard_fraction=0.3)
    run = api.train(config, out=tmp_path / "run", plots=False)
    assert len(run.history) == 4 and run.metrics["test_acc"] > 0.5
    ck = runs.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    losses, order = ck["losses"], ck["order"]
    assert losses.shape == (500,) and torch.isfinite(losses).all()  # 600 images - 100 for val
    # the last epoch's order: 10 steps of 50, passes of 150 images, the harder ones more often
    assert order.shape == (500,) and len(set(order[:150].tolist())) == 150
    assert len(set(order.tolist())) < 500
    # a plain run differs: its epochs are shuffles of every image
    plain = api.train(toy_config(epochs=3), out=tmp_path / "plain", plots=False)
    assert without_time(plain.history)[1:] != without_time(run.history)[1:]
    assert "losses" not in runs.load_checkpoint(tmp_path / "plain" / "checkpoint.pt")


@pytest.mark.parametrize("key, value", [("epoch", 2), ("step", 12)])
def test_a_resumed_run_ends_as_an_unbroken_one(toy, tmp_path, key, value):
    # cut at an epoch's end (the next draw is from the saved losses) and mid-epoch (the
    # saved order of the epoch goes on)
    config = toy_config(epochs=3, hard_fraction=0.3, eval_every=4 if key == "step" else None
                        ).replace(model={"name": "cnn"}, data={"augment": True})
    whole = api.train(config, out=tmp_path / "whole", plots=False)
    broken = cut_short(config, tmp_path / "broken", key, value)
    resumed = api.resume(broken, plots=False)
    assert without_time(resumed.history) == without_time(whole.history)
    assert resumed.metrics["test_loss"] == whole.metrics["test_loss"]


@pytest.mark.parametrize("edit, needle", [
    (lambda p: p.pop("losses"), "holds no per-image losses"),
    (lambda p: p.update(losses=torch.zeros(3)), "per-image losses are not 500 float32 numbers"),
    (lambda p: p.update(losses=torch.full((500,), math.nan)), "per-image losses are not 500"),
    (lambda p: p.update(order=torch.tensor([0, 500])), "order is not a list of training images"),
    (lambda p: p.update(order=torch.zeros(5)), "order is not a list of training images"),
    (lambda p: p.update(losses=p["losses"].half()), "per-image losses are not 500 float32"),
    (lambda p: p.update(losses=p["losses"].double()), "per-image losses are not 500 float32"),
    (lambda p: p.update(losses=p["losses"].clone().requires_grad_()), "per-image losses are not"),
])
def test_a_damaged_sampling_state_is_refused(toy, tmp_path, capsys, edit, needle):
    broken = cut_short(toy_config(epochs=3, hard_fraction=0.3), tmp_path / "broken", "epoch", 2)
    _edited_checkpoint(broken, edit)
    assert main(["train", "--resume", str(broken), "--no-plots", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error: ") and needle in err[0], err


@pytest.mark.parametrize("settings, needle", [
    ({"hard_fraction": -0.1}, "hard_fraction=-0.1"),
    ({"hard_fraction": 1.5}, "hard_fraction=1.5"),
    ({"hard_fraction": 0.001}, "hard_fraction=0.001"),
    ({"hard_pressure": 0.5}, "hard_pressure=0.5"),
    ({"hard_pressure": math.inf}, "hard_pressure=inf"),
])
def test_impossible_settings_are_refused(settings, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        RunConfig().replace(train=settings)


def test_the_flags_reach_the_config(capsys):
    assert main(["train", "--dry-run", "--hard-fraction", "0.5", "--hard-pressure", "10"]) == 0
    out = capsys.readouterr().out
    assert '"hard_fraction": 0.5' in out and '"hard_pressure": 10.0' in out


def test_the_headline_names_the_epoch_of_the_weights_scored(toy, tmp_path):
    # with select=last the best epoch by validation is still recorded (here made epoch 1),
    # but the headline must name the last epoch, whose weights were scored
    last = api.train(toy_config(epochs=3, select="last"), out=tmp_path / "last", plots=False)
    last.metrics["best_epoch"] = 1
    assert "last weights, epoch 3," in last.headline()
    best = api.train(toy_config(epochs=3), out=tmp_path / "best", plots=False)
    assert f"best weights, epoch {best.metrics['best_epoch']}," in best.headline()


def test_a_run_resumed_within_its_first_epoch_ends_as_an_unbroken_one(toy, tmp_path):
    # the first epoch's order is drawn from the generator the augmentation draws from next:
    # read back from the checkpoint instead, the resumed run augmented with other numbers
    config = toy_config(epochs=2, hard_fraction=0.3, eval_every=4).replace(data={"augment": True})
    whole = api.train(config, out=tmp_path / "whole", plots=False)
    resumed = api.resume(cut_short(config, tmp_path / "broken", "step", 4), plots=False)
    assert without_time(resumed.history) == without_time(whole.history)


def test_a_split_smaller_than_a_batch_is_one_batch_of_all_of_it(toy, tmp_path):
    # 500 training images, batches of 1000: every epoch one step on the 500, as a plain run
    run = api.train(toy_config(epochs=3, batch_size=1000, hard_fraction=0.3),
                    out=tmp_path / "run", plots=False)
    assert [r["step"] for r in run.history] == [0, 1, 2, 3]
    order = runs.load_checkpoint(tmp_path / "run" / "checkpoint.pt")["order"]
    assert order.shape == (500,) and len(set(order[:150].tolist())) == 150


@pytest.mark.parametrize("edit", [lambda p: p.update(order=p["order"][:3]),
                                  lambda p: p.update(order=p["order"][:0]),
                                  lambda p: p.pop("order")])
def test_a_mid_epoch_checkpoint_without_its_epochs_order_is_refused(toy, tmp_path, capsys, edit):
    # resumed mid-epoch, a short order would end the epoch early (and the run short of its
    # steps, with no final record), a missing one draw another: refused, not trained on
    broken = cut_short(toy_config(epochs=3, hard_fraction=0.3, eval_every=4), tmp_path / "b",
                       "step", 12)
    _edited_checkpoint(broken, edit)
    assert main(["train", "--resume", str(broken), "--no-plots", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "order is not the 500 images of an epoch" in err[0], err


def test_an_image_twice_in_a_batch_keeps_its_larger_loss():
    from fmnist.loop import keep_losses

    kept = torch.full((5,), math.inf)
    keep_losses(kept, torch.tensor([3, 1, 3, 0]), torch.tensor([0.5, 2.0, 0.75, 1.0]))
    assert kept.tolist() == [1.0, 2.0, math.inf, 0.75, math.inf]
