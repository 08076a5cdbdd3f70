"""Speed and accuracy of `fmnist train`, measured as wall time of the whole command.

    python benchmarks/train.py                 # mlp (3 repeats) and the default (1 repeat)
    python benchmarks/train.py --only resnet   # the long one
    python benchmarks/train.py --json out.json

Each case runs `python -m fmnist train ...` in a subprocess (so the wall time includes
start-up, data loading, training, the final test evaluation and writing the run) and reads
the run's metrics.json. Timings are medians over --repeats; the accuracy of a seed is
deterministic, so it is reported once. A baseline measured in the same run puts the data
path in proportion: one epoch of the `mlp` fed by a per-sample torch DataLoader versus our
device-resident batches.

Targets (2 CPU cores): mlp >= 88% test accuracy in < 5 s of training; the default
`fmnist train` >= 93% in < 180 s of wall time; resnet >= 94.5% given more time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    # name: (flags, repeats by default, target accuracy, target seconds, which seconds)
    # epochs and lr chosen on validation accuracy among 6/8 epochs x 2e-3/4e-3
    "mlp": (["--model", "mlp", "--optimizer", "adam", "--lr", "2e-3", "--epochs", "8",
             "--batch-size", "128", "--schedule", "onecycle", "--warmup-epochs", "0.5"],
            3, 0.88, 5.0, "train"),
    "default": ([], 1, 0.93, 180.0, "wall"),
    # measured once: 94.63% test (val 94.88%), 1,048 s of training, 20m50s wall on 2 cores
    "resnet": (["--model", "resnet", "--epochs", "60", "--warmup-epochs", "6", "--erase",
                "0.25", "--tta"], 1, 0.945, None, "wall"),
}


def run_case(flags: list[str], env: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "fmnist", "train", *flags, "--out", str(out), "--quiet"]
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        metrics = json.loads((out / "metrics.json").read_text())
    return {"wall": wall, "train": metrics["train_seconds"], "test_acc": metrics["test_acc"],
            "epoch": metrics["best_epoch"] or metrics["epochs_run"]}


def loader_baseline(data_dir: str | None, repeats: int) -> dict:
    """Seconds for one mlp epoch: per-sample DataLoader vs device-resident batches."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    from fmnist.data import load
    from fmnist.data.batches import DeviceData
    from fmnist.models import build_model

    split = load("fashion-mnist", "train", data_dir=data_dir)
    data = DeviceData(split.images, split.labels, 0.2860, 0.3530)

    class PerSample(Dataset):  # the usual tutorial pipeline: one image at a time
        def __len__(self):
            return len(split.labels)

        def __getitem__(self, i):
            x = torch.from_numpy(split.images[i]).float().div(255).sub(0.2860).div(0.3530)
            return x.unsqueeze(0), int(split.labels[i])

    def epoch(batches) -> float:
        torch.manual_seed(0)
        model = build_model("mlp")
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        t0 = time.perf_counter()
        for x, y in batches:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    ours = [epoch(data.batches(128, shuffle=True, generator=torch.Generator().manual_seed(0)))
            for _ in range(repeats)]
    theirs = [epoch(DataLoader(PerSample(), batch_size=128, shuffle=True))
              for _ in range(repeats)]
    return {"device_batches_s": statistics.median(ours), "dataloader_s": statistics.median(theirs)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=sorted(CASES), help="cases to run")
    p.add_argument("--repeats", type=int, help="override every case's repeats")
    p.add_argument("--data-dir", help="default: $FMNIST_DATA or ../shared/data")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    data = args.data_dir or os.environ.get("FMNIST_DATA") or str(REPO.parent / "shared" / "data")
    env = {**os.environ, "FMNIST_DATA": data, "PYTHONPATH": str(REPO / "src")}
    os.environ["FMNIST_DATA"] = data
    sys.path.insert(0, str(REPO / "src"))
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu count {os.cpu_count()}")
    results: dict = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    base = loader_baseline(None, 3)
    ratio = base["dataloader_s"] / base["device_batches_s"]
    print(f"baseline, one mlp epoch (median of 3): per-sample DataLoader "
          f"{base['dataloader_s']:.2f} s, device-resident batches {base['device_batches_s']:.2f} s"
          f" -> {ratio:.1f}x faster")
    results["baseline"] = {**base, "ratio": ratio}
    print(f"{'case':<8} {'test acc':>9} {'epoch':>6} {'train s':>9} {'wall s':>9}  target")
    for name in args.only or ["mlp", "default"]:
        flags, repeats, acc_target, s_target, which = CASES[name]
        runs = [run_case(flags, env) for _ in range(args.repeats or repeats)]
        wall = statistics.median(r["wall"] for r in runs)
        train = statistics.median(r["train"] for r in runs)
        acc = runs[0]["test_acc"]
        seconds = train if which == "train" else wall
        ok = acc >= acc_target and (s_target is None or seconds < s_target)
        target = f">= {100 * acc_target:.1f}%" + (f" in < {s_target:.0f} s ({which})" if s_target else "")
        print(f"{name:<8} {100 * acc:8.2f}% {runs[0]['epoch']:>6} {train:9.1f} {wall:9.1f}  "
              f"{target}: {'met' if ok else 'MISSED'}")
        results[name] = {"flags": flags, "test_acc": acc, "train_s_median": train,
                         "wall_s_median": wall, "repeats": len(runs), "target_met": ok}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
