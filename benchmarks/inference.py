"""Inference speed of an exported model: onnxruntime against torch, same weights, same inputs.

    python benchmarks/inference.py [RUN_DIR] [--model cnn] [--threads 1] [--repeats 50]

Batch-1 latency (median over --repeats single-image calls, after a warm-up) and the
throughput of scoring the 10,000 test images in batches of 1000, for:
  torch fp32    the exported computation in eager torch (uint8 pixels -> scaling -> model)
  torch as run  what `fmnist predict RUN_DIR` runs (Run.predict: the run's precision, e.g.
                bf16 autocast for the default cnn on CPUs that have it)
  onnxruntime   model.onnx from `fmnist export`, CPU execution provider
Without RUN_DIR an untrained --model is exported (speed does not depend on the weights).
All in one process and one sitting, so the ratios compare on a shared machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def median_seconds(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):  # oneDNN and onnxruntime pick their kernels on the first calls
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", help="a run directory (default: an untrained --model)")
    ap.add_argument("--model", default="cnn", help="without RUN_DIR: the model (default: cnn)")
    ap.add_argument("--threads", type=int, default=1, help="threads for both (default: 1)")
    ap.add_argument("--repeats", type=int, default=50, help="batch-1 calls timed (default: 50)")
    args = ap.parse_args()

    from fmnist.device import cpu_name
    from fmnist.export.onnx import (INPUT, PixelModel, export_proto, finish_proto, pixel_model,
                                    session)

    torch.set_num_threads(args.threads)
    run = None
    if args.run_dir:
        from fmnist.api import Run
        run = Run.load(args.run_dir, device="cpu")
        module, name = pixel_model(run), run.config.model.name
    else:
        from fmnist.models import build_model
        name = args.model
        module = PixelModel(build_model(name), 0.2860, 0.3530).eval()  # Fashion-MNIST's scaling
    try:
        from fmnist.data import load
        images = load("fashion-mnist", "test", download=False, progress=False).images
    except Exception:  # no data here: random pixels cost the same
        images = np.random.default_rng(0).integers(0, 256, (10_000, 28, 28), dtype=np.uint8)
    meta = {"model": name, "input": "uint8 (N, 28, 28)"}
    sess = session(finish_proto(export_proto(module), meta), args.threads)
    one, batches = images[:1], [images[i:i + 1000] for i in range(0, len(images), 1000)]

    @torch.no_grad()
    def torch_fp32(x):
        return module(torch.from_numpy(x))[1]

    runners = {"torch fp32": torch_fp32,
               "onnxruntime": lambda x: sess.run(["probabilities"], {INPUT: x})[0]}
    if run is not None:
        runners["torch as run"] = lambda x: run.predict(x)
    print(f"{name}, {args.threads} thread(s), torch {torch.__version__}, "
          f"{cpu_name()}; {len(images):,} images")
    print(f"{'':14} {'batch-1 latency':>16} {'throughput':>16}")
    results = {}
    for label, fn in runners.items():
        latency = median_seconds(lambda: fn(one), args.repeats)
        total = median_seconds(lambda: [fn(b) for b in batches], 3, warmup=1)
        results[label] = (latency, len(images) / total)
        print(f"{label:14} {1e3 * latency:13.3f} ms {len(images) / total:12,.0f} img/s")
    t, o = results["torch fp32"], results["onnxruntime"]
    print(f"onnxruntime / torch fp32: latency {o[0] / t[0]:.2f}x, throughput {o[1] / t[1]:.2f}x")


if __name__ == "__main__":
    main()
