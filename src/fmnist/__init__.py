"""fmnist: train, compare and explain image classifiers on Fashion-MNIST and its kin.

    import fmnist
    run = fmnist.train()      # the default recipe -> Run: .metrics, .predict(x), .evaluate()
    split = fmnist.data.load("fashion-mnist", "test")

Names are imported on first use, so `fmnist --help` does not wait for torch to load.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "data": ".data", "train": ".api", "resume": ".api", "open_run": ".api", "Run": ".api",
    "predict": ".api", "build": ".build", "Facts": ".config",
    "RunConfig": ".config", "DataConfig": ".config", "ModelConfig": ".config",
    "OptimConfig": ".config", "TrainConfig": ".config", "build_model": ".models",
    "build_optimizer": ".optim", "compare": ".compare", "runs": ".runs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fmnist' has no attribute {name!r}")
    module = import_module(_EXPORTS[name], __name__)
    return module if name in ("data", "compare", "runs") else getattr(module, name)
