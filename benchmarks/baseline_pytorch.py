"""The plain PyTorch baseline of benchmarks/train.py: a pytorch/examples-style script.

    python benchmarks/baseline_pytorch.py --recipe fast --seed 0

The loop every tutorial writes: a Dataset that hands out one image at a time, a shuffling
DataLoader, the model and optimizer of the recipe, its epochs and batch size at a constant
learning rate, and the test set scored after every epoch (as pytorch/examples' mnist does);
fp32, no augmentation. It prints the final test accuracy as JSON. The data come from fmnist's
loader (the IDX files are the same either way); everything else is what a newcomer writes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def torch_optimizer(torch, name: str, params, hp: dict, build_optimizer):
    """torch.optim's class as a newcomer calls it (not fmnist's fused, dynamo-free ones);
    the paper's optimizers, which torch lacks, from fmnist."""
    if name in ("sgd", "momentum", "nesterov"):
        return torch.optim.SGD(params, lr=hp["lr"], momentum=hp.get("momentum", 0.0),
                               weight_decay=hp["weight_decay"], nesterov=name == "nesterov")
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
                   weight_decay=hp["weight_decay"])
    return build_optimizer(name, params, **hp)


def main() -> int:
    t0 = time.perf_counter()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="default: the recipe's")
    args = p.parse_args()

    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset

    from fmnist.data import load
    from fmnist.models import build_model
    from fmnist.optim import OPTIMIZERS, build_optimizer
    from fmnist.recipes import RECIPES

    config = RECIPES.get(args.recipe).config()
    torch.manual_seed(args.seed)
    train, test = (load(config.data.dataset, s) for s in ("train", "test"))

    class Images(Dataset):  # one image at a time, normalised as torchvision's Normalize would
        def __init__(self, split):
            self.split = split

        def __len__(self):
            return len(self.split.labels)

        def __getitem__(self, i):
            x = torch.from_numpy(self.split.images[i]).float().div(255)
            if config.data.scaling == "standard":
                x = x.sub(0.2860).div(0.3530)
            return x.unsqueeze(0), int(self.split.labels[i])

    model = build_model(config.model.name, **config.model.kwargs)
    hp = {**OPTIMIZERS.get(config.optim.name).defaults, **config.optim.hyperparameters()}
    opt = torch_optimizer(torch, config.optim.name, model.parameters(), hp, build_optimizer)
    train_loader = DataLoader(Images(train), batch_size=config.train.batch_size, shuffle=True)
    test_loader = DataLoader(Images(test), batch_size=1000)
    acc = 0.0
    for _epoch in range(args.epochs or config.train.epochs):
        model.train()
        for x, y in train_loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x).argmax(1) == y).sum().item()
        acc = correct / len(test.labels)
    print(json.dumps({"test_acc": acc, "seconds": time.perf_counter() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
