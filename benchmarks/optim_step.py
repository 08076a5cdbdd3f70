"""Time of one optimizer step of every registered optimizer on p1's parameters, vs Adam.

    PYTHONPATH=src python benchmarks/optim_step.py [NAME ...] [--threads N] [--repeats 5]
                                                   [--steps 30] [--json PATH]

Each optimizer gets its own copy of the model's parameters (fmnist.models.build_model,
p1 by default: 3.3 M parameters) with the same random gradients, set once; the gradients
are never recomputed, so only opt.step() is timed. After --warmup untimed steps, each
round times --steps single steps of every optimizer in turn (the order rotates from round
to round) and keeps their median; a figure is the median over the --repeats rounds. The
ratio to torch's Adam (the registry's "adam", always measured) is taken within each round
and its median reported, so a slow spell on a shared machine moves both sides of a ratio.
torch's Adam allocates parameter-sized temporaries on every step (6,240 page faults a
step on p1; M-SVAG: none), which makes it the most load-sensitive figure of the table:
on 2 shared cores its time ranged from 7 to 50 ms on p1 from one run to another. The steps are timed back to back, with
the optimizer's data partly still in the cache, as it would not be after a backward pass.
--threads sets torch's thread count (default: every core this process may use); --json
PATH saves the numbers with their conditions.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fmnist.device import cpu_name, usable_cores
from fmnist.models import build_model
from fmnist.optim import OPTIMIZERS, build_optimizer

BASELINE = "adam"


def make_optimizers(names: list[str], model: str, device: str) -> dict[str, torch.optim.Optimizer]:
    """name -> optimizer over its own copy of the model's parameters, gradients set."""
    torch.manual_seed(0)
    weights = [p.detach().to(device) for p in build_model(model).parameters()]
    grads = [torch.randn_like(w) for w in weights]
    optimizers = {}
    for name in names:
        params = [w.clone().requires_grad_() for w in weights]
        for p, g in zip(params, grads):
            p.grad = g.clone()  # each its own: no optimizer may see another's writes
        optimizers[name] = build_optimizer(name, params)
    return optimizers


def time_steps(opt: torch.optim.Optimizer, steps: int, sync) -> float:
    """Median seconds of `steps` single calls of opt.step()."""
    times = []
    for _ in range(steps):
        sync()
        t0 = time.perf_counter()
        opt.step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="default: every registered optimizer")
    parser.add_argument("--model", default="p1", help="whose parameters (default p1)")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="torch threads (default: the usable cores, %(default)s here)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds over the optimizers")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--json", help="save the results here")
    args = parser.parse_args()
    if args.threads < 1 or args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--threads, --repeats and --steps must be >= 1, --warmup >= 0")
    for name in args.names:
        OPTIMIZERS.get(name)  # an unknown name fails here, listing the known ones
    torch.set_num_threads(args.threads)
    names = list(dict.fromkeys([BASELINE, *(args.names or OPTIMIZERS.names())]))
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    optimizers = make_optimizers(names, args.model, args.device)
    n_params = sum(p.numel() for p in optimizers[BASELINE].param_groups[0]["params"])
    cpu = cpu_name()
    print(f"{cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.device}; {args.model} ({n_params:,} parameters); median of {args.repeats} "
          f"rounds x {args.steps} steps", flush=True)
    for opt in optimizers.values():
        for _ in range(args.warmup):  # creates the state; first-touch page faults
            opt.step()
    sync()

    rounds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: no fixed neighbour
        for name in order:
            rounds[name].append(time_steps(optimizers[name], args.steps, sync))

    print(f"{'optimizer':10} {'ms/step':>8} {'min':>8} {'max':>8} {'x adam':>7}")
    results = []
    for name in names:
        ms = [1e3 * s for s in rounds[name]]
        ratio = statistics.median(a / b for a, b in zip(rounds[name], rounds[BASELINE]))
        results.append({"optimizer": name, "ms_per_step": statistics.median(ms),
                        "round_ms": ms, "ratio_to_adam": ratio})
        print(f"{name:10} {statistics.median(ms):8.2f} {min(ms):8.2f} {max(ms):8.2f} "
              f"{ratio:7.2f}", flush=True)

    if args.json:
        meta = {"cpu": cpu, "torch": torch.__version__, "threads": torch.get_num_threads(),
                "device": args.device, "model": args.model, "parameters": n_params,
                "repeats": args.repeats, "steps": args.steps, "warmup": args.warmup}
        with open(args.json, "w") as f:
            json.dump({"conditions": meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
