"""The training loop: one function over built parts (build.py) and the training config.

Evaluate before the first step and after every epoch; checkpoint after every epoch, so a
killed run resumes from the last one and ends with the same numbers as an unbroken run
(all randomness of an epoch is drawn from generators seeded by (seed, epoch)). It knows
nothing of the command line; files are written only through the `Store` it is given.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from .build import Parts
from .config import TrainConfig
from .data.batches import hard_order
from .errors import FmnistError
from .evaluate import all_finite, loss_and_accuracy
from .progress import NoBar
from .progress import bar as progress_bar
from .schedule import lr_factor

Log = Callable[[str], None]


class TrainingDiverged(FmnistError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step


@dataclass
class State:
    """Where the loop stands: what a checkpoint holds besides weights and optimizer."""

    history: list[dict] = field(default_factory=list)  # one record per epoch, 0 = before training
    step: int = 0  # optimizer steps taken
    best_acc: float = -math.inf  # best validation accuracy so far
    best_epoch: int | None = None  # index in history of the best record (= its epoch when
    #                                 evaluating after every epoch); None: no validation yet
    bad_epochs: int = 0  # evaluations since the best one
    # loss-weighted sampling (hard_fraction > 0) only: each training image's loss when last
    # trained on (inf: not yet), and the order of the current epoch's images, drawn from the
    # losses at its start (a run resumed mid-epoch carries on with the same order)
    losses: torch.Tensor | None = None
    order: torch.Tensor | None = None

    def to_dict(self) -> dict:
        hard = {} if self.losses is None else {"losses": self.losses, "order": self.order}
        return {"history": self.history, "step": self.step, "best_acc": self.best_acc,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, **hard}


class Store(Protocol):
    """Where the loop keeps its state (runs.RunStore writes the run directory)."""

    def checkpoint(self, parts: Parts, state: State) -> None: ...
    def best(self, parts: Parts, epoch: int) -> None: ...
    @property
    def checkpoint_name(self) -> str: ...


@dataclass
class Fit:
    """What a finished (or early-stopped) loop hands back."""

    history: list[dict]
    best_epoch: int | None  # history index of the best validation accuracy (None: no validation)
    stopped_early: bool


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each (run seed, epoch)."""
    return seed * 1_000_003 + epoch


def keep_losses(kept: torch.Tensor, idx: torch.Tensor, losses: torch.Tensor) -> None:
    """kept[idx] = losses, in place, where a batch may hold an image twice (a pass of
    hard_order ends inside it): `kept[idx] = ...` leaves which of the two is kept undefined
    (a GPU's threads race), so the larger is kept, the same on every device and run."""
    kept.scatter_reduce_(0, idx, losses.detach(), reduce="amax", include_self=False)


def epoch_images(n: int, batch_size: int) -> int:
    """How many images an epoch of drop_last batches trains on."""
    return n if n < batch_size else n - n % batch_size


def epoch_order(data, tc: TrainConfig, s: State, epoch: int, gen: torch.Generator,
                resumed: bool) -> torch.Tensor | None:
    """The training images of an epoch, in order, under loss-weighted sampling (None: off,
    the batches shuffle all of them). The first epoch is a shuffle of all, drawn from `gen`
    as the batches would draw it; later ones come from hard_order, on a generator of their
    own so that the augmentation's draws do not depend on whether the order was drawn or
    (resumed mid-epoch) read back from the checkpoint."""
    if tc.hard_fraction <= 0:
        return None
    if s.losses is None:
        s.losses = torch.full((len(data.train),), math.inf, device=data.train.device)
    if epoch <= 1:  # drawn again even when resumed mid-epoch (the saved order is this one):
        # the augmentation draws that follow on `gen` must come after it, as they did
        s.order = torch.randperm(len(data.train), generator=gen)
    elif resumed and s.order is not None:
        return s.order
    else:
        draw = torch.Generator().manual_seed(epoch_seed(tc.seed, epoch) + 500_000)
        # as many images as a plain epoch trains on: a split smaller than a batch is one
        # batch of all of it, not a batch of batch_size with images repeated in it
        s.order = hard_order(s.losses, tc.hard_fraction, tc.hard_pressure,
                             epoch_images(len(data.train), tc.batch_size), draw)
    return s.order


def score(parts: Parts, tc: TrainConfig, epoch: int, step: int, lr: float, seconds: float,
          batch_loss: float | None) -> dict:
    """The history record of one epoch: losses and accuracies measured in eval mode."""
    record = {"epoch": epoch, "step": step, "lr": lr, "seconds": round(seconds, 3),
              "batch_loss": batch_loss}
    data = parts.data
    splits = {"train": data.train_eval, "val": data.val, **({"test": data.test} if tc.eval_test else {})}
    for name, split in splits.items():  # tta_shifts only at the final scoring: 3x the views
        # the training images without TTA: their curve shows how well the model fits them,
        # and the mirror views would double a cost paid every epoch (tta's help: "validation
        # and test alike"). Nor before the first step: the untrained model scores chance
        # either way, is never chosen, and the views cost ~0.45 s, ~1% of the default run
        tta = tc.tta and name != "train" and step > 0
        loss, acc = (loss_and_accuracy(parts.model, split, tc.eval_batch_size, parts.autocast, tta)
                     if len(split) else (None, None))
        record[f"{name}_loss"], record[f"{name}_acc"] = loss, acc
    return record


def fit(parts: Parts, tc: TrainConfig, *, state: State | None = None, store: Store | None = None,
        progress: bool = False, log: Log | None = None,
        on_epoch: Callable[[list[dict]], None] | None = None) -> Fit:
    """Train `parts.model` for `tc.epochs` (or `tc.steps`), continuing from `state` (a resumed
    run's), evaluating and checkpointing after every epoch (or every `tc.eval_every` steps)."""
    log = log or (lambda _msg: None)
    model, opt, data, device = parts.model, parts.optimizer, parts.data, parts.device
    peak_lrs = [g["lr"] for g in opt.param_groups]
    steps_per_epoch = max(len(data.train) // tc.batch_size, 1)
    total_steps = tc.steps if tc.steps is not None else steps_per_epoch * tc.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    warmup_steps = round(tc.warmup_epochs * steps_per_epoch)
    has_val = len(data.val) > 0
    s = state or State()
    clock = {"seconds": s.history[-1]["seconds"] if s.history else 0.0, "t0": time.perf_counter()}
    sums = {"loss": torch.zeros((), device=device), "correct": torch.zeros((), device=device), "n": 0}

    def record(batch_loss: float | None, lr: float | None = None) -> None:
        """Score, keep the best weights by validation accuracy (never the test set), checkpoint."""
        if s.step > 0:  # training time, not scoring (epoch 0 is before any: 0 s)
            clock["seconds"] += time.perf_counter() - clock["t0"]
        epoch = s.step / steps_per_epoch  # fractional between epochs (eval_every)
        if s.step > 0 and not all_finite(model):  # a finite loss, then a step too far
            diverged(f"the weights became NaN or infinite by epoch {math.ceil(epoch)}, step "
                     f"{s.step}", math.ceil(epoch))
        r = score(parts, tc, int(epoch) if epoch.is_integer() else round(epoch, 4), s.step,
                  opt.param_groups[0]["lr"] if lr is None else lr, clock["seconds"], batch_loss)
        s.history.append(r)
        log(_epoch_line(r, epochs))
        if s.step > 0 and has_val and r["val_acc"] > s.best_acc:
            s.best_acc, s.best_epoch, s.bad_epochs = r["val_acc"], len(s.history) - 1, 0
            if store is not None and tc.select == "best":
                store.best(parts, len(s.history) - 1)
        elif s.step > 0 and has_val:
            s.bad_epochs += 1
        if store is not None:  # checkpoint
            store.checkpoint(parts, s)
        if on_epoch is not None and s.step > 0:
            on_epoch(s.history)
        clock["t0"] = time.perf_counter()

    # A NaN or infinite loss stops the run. On the CPU each step's loss is checked before its
    # backward pass. On a GPU, reading a number back waits for all the work queued before it,
    # and a read at every step would keep the CPU from queueing the next steps meanwhile: there
    # the running sum of the losses is checked instead (a NaN or inf stays in it) every 20
    # steps and before every record, and the step reported is the one it was found at. Every
    # record also checks the weights (a finite loss can still take a step to inf), so no
    # checkpoint holds weights a NaN reached.
    on_cpu = device.type == "cpu"
    live = {"bar": NoBar()}  # the epoch's progress bar, closed before an error is raised

    def diverged(what: str, epoch: int) -> None:
        live["bar"].close()
        where = f"; the last good checkpoint is {store.checkpoint_name}" if store else ""
        raise TrainingDiverged(f"{what}: lower the learning rate (--lr) or clip gradients "
                               f"(--clip-grad){where}", epoch, s.step)

    def check_finite(epoch: int) -> None:
        total = sums["loss"].item()
        if not math.isfinite(total):
            diverged(f"loss became {total} by epoch {epoch}, step {s.step}", epoch)

    def patience_out() -> bool:
        return tc.patience is not None and s.bad_epochs >= tc.patience

    if not s.history:  # evaluate before the first step
        record(None, peak_lrs[0] * lr_factor(tc.schedule, 0, total_steps, warmup_steps))

    stopped_early = False
    skip = s.step % steps_per_epoch  # resumed mid-epoch (eval_every): batches already trained
    for epoch in range(s.step // steps_per_epoch + 1, epochs + 1):
        if patience_out():  # early stopping; checked here too, for a resumed run that had stopped
            stopped_early = True
            log(f"early stop: no better validation accuracy for {tc.patience} evaluations")
            break
        # dropout's draws: seeded per epoch, or where a resumed run picks up mid-epoch
        torch.manual_seed(step_seed(tc.seed, s.step) if skip else epoch_seed(tc.seed, epoch))
        gen = torch.Generator().manual_seed(epoch_seed(tc.seed, epoch))  # order, augmentation
        model.train()
        bar = live["bar"] = progress_bar(
            progress, total=min(steps_per_epoch, total_steps - s.step + skip), initial=skip,
            desc=f"epoch {epoch}/{epochs}", leave=False, unit="step", dynamic_ncols=True)
        order = epoch_order(data, tc, s, epoch, gen, resumed=skip > 0)
        # on the device once an epoch: a copy from the CPU every step would wait for a GPU's queue
        placed = order.to(data.train.device) if order is not None else None
        for i, (x, y) in enumerate(data.train.batches(tc.batch_size, shuffle=True, generator=gen,
                                                      augment=parts.augment, drop_last=True,
                                                      order=placed)):
            if i < skip:  # the same order and augmentation draws as the run that was cut short
                continue
            if s.step >= total_steps:
                break
            factor = lr_factor(tc.schedule, s.step, total_steps, warmup_steps)
            for group, peak in zip(opt.param_groups, peak_lrs):
                group["lr"] = peak * factor
            # forward
            with parts.autocast():
                logits = model(x)
            if order is None:
                loss = F.cross_entropy(logits.float(), y, label_smoothing=tc.label_smoothing)
            else:  # each image's loss, kept for the next epoch's draw
                losses = F.cross_entropy(logits.float(), y, label_smoothing=tc.label_smoothing,
                                         reduction="none")
                loss = losses.mean()
            if on_cpu and not torch.isfinite(loss):  # (a GPU's loss: see check_finite)
                diverged(f"loss became {loss.item()} at epoch {epoch}, step {s.step}", epoch)
            # backward
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad)
            # step
            opt.step()
            s.step += 1
            if order is not None:
                keep_losses(s.losses, placed[i * tc.batch_size:(i + 1) * tc.batch_size], losses)
            sums["loss"] += loss.detach() * len(y)
            sums["correct"] += (logits.detach().argmax(1) == y).sum()  # of augmented batches
            sums["n"] += len(y)
            bar.update()
            if s.step % 20 == 0:  # .item() syncs a GPU: only every 20 steps
                check_finite(epoch)
                bar.set_postfix(loss=f"{sums['loss'].item() / sums['n']:.4f}",
                                acc=f"{100 * sums['correct'].item() / sums['n']:.1f}%",
                                lr=f"{factor * peak_lrs[0]:.2g}")
            # evaluate every eval_every steps: a paper's protocol in steps, not epochs
            if tc.eval_every and (s.step % tc.eval_every == 0 or s.step == total_steps):
                check_finite(epoch)  # never a checkpoint of weights a NaN has reached
                record(_mean_loss(sums))
                torch.manual_seed(step_seed(tc.seed, s.step))  # as a run resumed here will
                model.train()
                if patience_out():
                    break
        bar.close()
        skip = 0
        if not tc.eval_every:  # evaluate after the epoch
            check_finite(epoch)
            record(_mean_loss(sums))
        if s.step >= total_steps:
            break
    return Fit(s.history, s.best_epoch, stopped_early)


def _mean_loss(sums: dict) -> float:
    """The mean training loss since the last record; resets the sums."""
    mean = sums["loss"].item() / max(sums["n"], 1)
    sums["loss"].zero_(), sums["correct"].zero_()
    sums["n"] = 0
    return mean


def step_seed(seed: int, step: int) -> int:
    """The dropout seed of a run picking up at `step` (eval_every): distinct from epoch seeds."""
    return (seed * 1_000_003 + step) * 7 + 3


def _epoch_line(r: dict, epochs: int) -> str:
    def pct(v):
        return "   -  " if v is None else f"{100 * v:6.2f}"

    def num(v):
        return "   -  " if v is None else f"{v:6.4f}"

    return (f"epoch {r['epoch']:>3}/{epochs}  train loss {num(r['train_loss'])} "
            f"acc {pct(r['train_acc'])}%  val loss {num(r['val_loss'])} acc {pct(r['val_acc'])}%"
            f"  lr {r['lr']:.3g}  {r['seconds']:7.1f}s")
