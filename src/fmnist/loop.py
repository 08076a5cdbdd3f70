"""The training loop: one function you can import and test.

Evaluate before the first step and after every epoch; checkpoint after every epoch, so a
killed run resumes from the last one and ends with the same numbers as an unbroken run
(all randomness of an epoch is drawn from generators seeded by (seed, epoch)).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .config import RunConfig
from .data.batches import Augment
from .device import (autocast_factory, resolve_device, resolve_precision, set_threads,
                     uses_convolutions)
from .errors import FmnistError
from .evaluate import loss_and_accuracy
from .models import build_model
from .optim import build_optimizer
from .prepare import TrainData, prepare_data
from .runs import BEST, CHECKPOINT, load_checkpoint, load_weights, save_checkpoint, save_history
from .schedule import lr_factor

Log = Callable[[str], None]
MLP_MODELS = frozenset({"logreg", "mlp", "mlp2"})  # no augmentation by default: no conv prior


class TrainingDiverged(FmnistError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step


@dataclass
class Fit:
    """What a finished (or stopped) loop hands back."""

    model: torch.nn.Module
    history: list[dict]  # one record per epoch, epoch 0 = before training
    best_epoch: int | None  # epoch of the best validation accuracy (None: no validation)
    stopped_early: bool
    data: TrainData
    device: torch.device
    autocast: Callable


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each (run seed, epoch)."""
    return seed * 1_000_003 + epoch


def augmentation(config: RunConfig) -> Augment | None:
    d = config.data
    on = d.augment if d.augment is not None else config.model.name not in MLP_MODELS
    return Augment(d.crop_pad, d.flip, d.erase) if on else None


def param_groups(model: torch.nn.Module) -> list[dict]:
    """Weight decay on conv and linear weights only: decaying batch-norm scales and biases
    only fights the normalisation (the usual practice, as in timm and airbench)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [g for g in ({"params": decay}, {"params": rest, "weight_decay": 0.0}) if g["params"]]


def score(model, data: TrainData, cfg, autocast, epoch: int, step: int, lr: float,
          seconds: float, batch_loss: float | None, with_test: bool = False) -> dict:
    """The history record of one epoch: losses and accuracies measured in eval mode."""
    bs = cfg.train.eval_batch_size
    record = {"epoch": epoch, "step": step, "lr": lr, "seconds": round(seconds, 3),
              "batch_loss": batch_loss}
    parts = {"train": data.train_eval, "val": data.val}
    if with_test:
        parts["test"] = data.test
    for name, part in parts.items():
        loss, acc = (loss_and_accuracy(model, part, bs, autocast, cfg.train.tta) if len(part)
                     else (None, None))
        record[f"{name}_loss"], record[f"{name}_acc"] = loss, acc
    return record


def fit(config: RunConfig, run_dir: Path, *, resume: bool = False, progress: bool = True,
        log: Log | None = None, eval_test: bool = False,
        on_epoch: Callable[[list[dict]], None] | None = None) -> Fit:
    """Train `config` in `run_dir`; with `resume`, continue from its checkpoint.pt."""
    from tqdm import tqdm

    tc = config.train
    log = log or (lambda _msg: None)
    device = resolve_device(tc.device)
    set_threads(tc.threads)
    autocast = autocast_factory(resolve_precision(tc.precision, device), device)
    data = prepare_data(config.data, device, eval_subset=tc.eval_subset)
    torch.manual_seed(tc.seed)
    model = build_model(config.model.name, num_classes=len(data.class_names),
                        **config.model.kwargs).to(device)
    if uses_convolutions(model):
        # channels_last: oneDNN's and cuDNN's fast convolution layout; with bf16, 2.2x the
        # training throughput of fp32 NCHW for the cnn on 2 cores (benchmarks/model_speed.py)
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(config.optim.name, param_groups(model),
                          **config.optim.hyperparameters())
    peak_lrs = [g["lr"] for g in opt.param_groups]
    steps_per_epoch = max(len(data.train) // tc.batch_size, 1)
    total_steps = steps_per_epoch * tc.epochs
    warmup_steps = round(tc.warmup_epochs * steps_per_epoch)
    aug = augmentation(config)
    has_val = len(data.val) > 0

    history: list[dict] = []
    start, step, best_acc, best_epoch, bad_epochs = 1, 0, -math.inf, None, 0
    if resume and (run_dir / CHECKPOINT).exists():
        ck = load_checkpoint(run_dir / CHECKPOINT, device)
        load_weights(model, ck, config.model.name, run_dir / CHECKPOINT)
        opt.load_state_dict(ck["optimizer"])
        history, step = ck["history"], ck["step"]
        best_acc, best_epoch, bad_epochs = ck["best_acc"], ck["best_epoch"], ck["bad_epochs"]
        start = history[-1]["epoch"] + 1
        log(f"resumed from {run_dir / CHECKPOINT} after epoch {start - 1}")

    def checkpoint() -> None:
        save_checkpoint(run_dir / CHECKPOINT, {
            "model_name": config.model.name, "model": model.state_dict(),
            "optimizer": opt.state_dict(), "history": history, "step": step,
            "best_acc": best_acc, "best_epoch": best_epoch, "bad_epochs": bad_epochs})
        save_history(run_dir, history)

    if not history:  # evaluate before the first step
        history.append(score(model, data, config, autocast, 0, 0, peak_lrs[0] * lr_factor(
            tc.schedule, 0, total_steps, warmup_steps), 0.0, None, eval_test))
        log(_epoch_line(history[-1], tc.epochs))
        checkpoint()

    def patience_out() -> bool:
        return tc.patience is not None and bad_epochs >= tc.patience

    stopped_early = False
    for epoch in range(start, tc.epochs + 1):
        if patience_out():  # early stopping; checked here too for a resumed stopped run
            stopped_early = True
            log(f"early stop: no better validation accuracy for {tc.patience} epochs")
            break
        torch.manual_seed(epoch_seed(tc.seed, epoch))  # dropout
        gen = torch.Generator().manual_seed(epoch_seed(tc.seed, epoch))  # order, augmentation
        model.train()
        seconds = history[-1]["seconds"]
        t0 = time.perf_counter()
        loss_sum, correct, n_seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{tc.epochs}", leave=False,
                   disable=not progress, unit="step", dynamic_ncols=True)
        for x, y in data.train.batches(tc.batch_size, shuffle=True, generator=gen,
                                       augment=aug, drop_last=True):
            factor = lr_factor(tc.schedule, step, total_steps, warmup_steps)
            for group, peak in zip(opt.param_groups, peak_lrs):
                group["lr"] = peak * factor
            # forward
            with autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=tc.label_smoothing)
            if not torch.isfinite(loss):
                bar.close()
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {epoch}, step {step}: lower the "
                    f"learning rate (--lr) or clip gradients (--clip-grad); the last good "
                    f"checkpoint is {run_dir / CHECKPOINT}", epoch, step)
            # backward
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad)
            # step
            opt.step()
            step += 1
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()  # of augmented training batches
            n_seen += len(y)
            bar.update()
            if step % 20 == 0:  # .item() syncs a GPU: only every 20 steps
                bar.set_postfix(loss=f"{loss_sum.item() / n_seen:.4f}",
                                acc=f"{100 * correct.item() / n_seen:.1f}%", lr=f"{factor * peak_lrs[0]:.2g}")
        bar.close()
        seconds += time.perf_counter() - t0
        # evaluate
        record = score(model, data, config, autocast, epoch, step, opt.param_groups[0]["lr"],
                       seconds, loss_sum.item() / max(n_seen, 1), eval_test)
        history.append(record)
        log(_epoch_line(record, tc.epochs))
        # keep the best weights by validation accuracy (never the test set)
        if has_val and record["val_acc"] > best_acc:
            best_acc, best_epoch, bad_epochs = record["val_acc"], epoch, 0
            save_checkpoint(run_dir / BEST, {"model_name": config.model.name,
                                             "model": model.state_dict(), "epoch": epoch})
        elif has_val:
            bad_epochs += 1
        # checkpoint
        checkpoint()
        if on_epoch is not None:
            on_epoch(history)
    return Fit(model, history, best_epoch, stopped_early, data, device, autocast)


def _epoch_line(r: dict, epochs: int) -> str:
    def pct(v):
        return "   -  " if v is None else f"{100 * v:6.2f}"

    def num(v):
        return "   -  " if v is None else f"{v:6.4f}"

    return (f"epoch {r['epoch']:>3}/{epochs}  train loss {num(r['train_loss'])} "
            f"acc {pct(r['train_acc'])}%  val loss {num(r['val_loss'])} acc {pct(r['val_acc'])}%"
            f"  lr {r['lr']:.3g}  {r['seconds']:7.1f}s")
