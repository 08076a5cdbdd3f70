"""The GPU path: run only where torch sees a CUDA GPU (marked `cuda`; skipped elsewhere with
the reason). The data set lives on the GPU, conv nets train under bf16 autocast in
channels_last, a run trained there opens on the CPU, and a run cut short resumes exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fmnist import api, runs
from fmnist.build import build
from fmnist.compare import make_plan, run_plan
from fmnist.compare.execute import Execution
from fmnist.config import RunConfig
from fmnist.loop import TrainingDiverged

from conftest import cut_short

pytestmark = pytest.mark.cuda


def gpu_config(**train) -> RunConfig:
    return RunConfig().replace(
        data={"dataset": "toy", "val_size": 100}, model={"name": "cnn"},
        train={"epochs": 3, "batch_size": 50, "eval_subset": 200, "device": "cuda", **train})


def test_data_model_and_precision_on_the_gpu(toy):
    parts = build(gpu_config())
    assert parts.data.train.images.is_cuda and parts.data.test.labels.is_cuda
    assert next(parts.model.parameters()).is_cuda
    assert parts.facts.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    conv = next(m for m in parts.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_gpu_run_learns_and_opens_on_the_cpu(toy, tmp_path):
    run = api.train(gpu_config(), out=tmp_path / "run", plots=False)
    assert run.metrics["device"].startswith("cuda") and run.metrics["test_acc"] > 0.9
    on_cpu = api.Run.load(run.dir, device="cpu")
    images = toy.arrays["test_images"][:20]
    assert (on_cpu.predict(images).argmax(1) == run.predict(images).argmax(1)).mean() >= 0.95


@pytest.mark.parametrize("hard", [0.0, 0.3])
def test_gpu_run_cut_short_resumes_to_the_same_numbers(toy, tmp_path, hard):
    # fp32 mlp: cuBLAS matmuls are deterministic for a fixed configuration; with loss-weighted
    # sampling (hard 0.3) the per-image losses live on the GPU and go into the checkpoint
    config = gpu_config(epochs=3, precision="fp32", hard_fraction=hard).replace(model={"name": "mlp"})
    whole = api.train(config, out=tmp_path / "whole", plots=False)
    cut = cut_short(config, tmp_path / "cut", "epoch", 1)
    resumed = api.resume(cut, plots=False)
    assert resumed.metrics["test_acc"] == whole.metrics["test_acc"]
    assert [r["val_loss"] for r in runs.load_history(cut)] == [r["val_loss"] for r in whole.history]


def test_gpu_divergence_stops_before_a_checkpoint_holds_a_nan(toy, tmp_path):
    # on a GPU the loss is read back only every 20 steps and before each checkpoint
    config = gpu_config(epochs=3).replace(optim={"name": "sgd", "lr": 1e12})
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        api.train(config, out=tmp_path / "run", plots=False)
    weights = runs.load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_comparison_cells_on_the_gpu(real_data_dir, monkeypatch, tmp_path):
    # the cells run in fresh (spawned) processes: they see the registered data sets only,
    # not the test's toy one (test_parallel.py does the same)
    monkeypatch.setenv("FMNIST_DATA", str(real_data_dir))
    plan = make_plan("msgd,msvag", seeds=1, overrides={
        "data": {"train_limit": 3000, "val_size": 500}, "model": {"name": "mlp"},
        "train": {"epochs": 2, "batch_size": 50, "eval_subset": 500, "device": "cuda"}})
    summary = run_plan(plan, tmp_path / "c", log=None, execution=Execution(jobs=2))
    accs = [row["test_acc"] for row in summary["rows"]]
    assert len(accs) == 2 and all(np.isfinite(a) and a > 0.5 for a in accs)
