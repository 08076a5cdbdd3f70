"""Hand a run off: ONNX and safetensors files, a static browser demo.

onnx.py      the run's model with its input scaling as one verified ONNX file (torch)
runtime.py   scoring with onnxruntime alone: `fmnist predict --onnx` (no torch)
weights.py   safetensors weights and a JSON model card (no pickle)
demo.py      the static site: index.html, demo.js, model.onnx, onnxruntime-web
Nothing but fmnist.extras (itself torch-free) is imported here, so `import
fmnist.export.runtime` stays free of torch.
"""
from __future__ import annotations

import functools

from .. import extras

# need(module, what): import an optional dependency of the `export` extra, or one clear line
# naming its install; the one implementation is extras.need, shared with `explain`
need = functools.partial(extras.need, extra="export")
