"""Hand a run off: ONNX and safetensors files, a static browser demo.

onnx.py      the run's model with its input scaling as one verified ONNX file (torch)
runtime.py   scoring with onnxruntime alone: `fmnist predict --onnx` (no torch)
weights.py   safetensors weights and a JSON model card (no pickle)
demo.py      the static site: index.html, demo.js, model.onnx, onnxruntime-web
Nothing is imported here, so `import fmnist.export.runtime` stays free of torch.
"""
from __future__ import annotations

from importlib import import_module

from ..errors import FmnistError

EXTRA = "pip install -c constraints.txt 'fmnist[export]'"


def need(module: str, what: str):
    """Import an optional dependency of the `export` extra, or one clear line naming it."""
    try:
        return import_module(module)
    except ImportError:
        raise FmnistError(f"{what} needs the {module.split('.')[0]} package of the export "
                          f"extra: {EXTRA}") from None
