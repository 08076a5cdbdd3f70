"""A run's model as one self-contained ONNX file that takes raw pixels, verified before it
is written.

The graph: pixels uint8 (N, 28, 28), 0 = black background, as the data set stores them
-> float32 -> (x / 255 - mean) / std (the run's own scaling, so a consumer cannot get the
normalisation wrong) -> the model in fp32 (a bf16-trained run too) -> `logits` and
`probabilities` (N, C). uint8 is the one input type: it is what an IDX file, a PNG and a
canvas's ImageData hold; a consumer with float pixels 0..255 rounds them to uint8 first.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..errors import FmnistError
from ..evaluate import tta_logits
from ..fsutil import atomic_write_bytes, check_target
from . import need

OPSET = 18  # the dynamo exporter's own; onnxruntime (web included) has run it since 1.14
INPUT, OUTPUTS = "pixels", ("logits", "probabilities")
# fp32 throughout on both sides, so only the order of the sums differs (oneDNN's kernels in
# torch, MLAS's in onnxruntime): measured 1e-6..1e-5 on logits of size ~10 for our models.
# 1e-4 is ten times that and still a thousand times below a logit gap that matters; a wrong
# op (a missing scaling, a dropped layer, a bad cast) moves logits by 0.1 or more.
TOLERANCE = 1e-4
INPUT_SPEC = ("pixels: uint8 (N, 28, 28), 0 = black background, garment light, as the data "
              "set's images; scaled inside the graph: (pixels / 255 - mean) / std")


class PixelModel(nn.Module):
    """The run's model behind its input scaling: uint8 pixels in, logits and probabilities out."""

    def __init__(self, model: nn.Module, mean: float, std: float, tta: bool = False,
                 shifts: bool = False) -> None:
        super().__init__()
        self.model, self.mean, self.std = model, float(mean), float(std)
        self.tta, self.shifts = tta, shifts

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the same ops in the same order as DeviceData.normalise, so torch agrees bit for bit
        x = (pixels.unsqueeze(1).float() / 255.0 - self.mean) / self.std  # (N, 1, 28, 28)
        # as the run was scored: averaged over its test-time views (mirror, shifts)
        logits = tta_logits(self.model, x, self.tta, self.shifts, -(self.mean / self.std))
        return logits, torch.softmax(logits, dim=1)


def pixel_model(run) -> PixelModel:
    """An fp32 CPU copy of a loaded run's model (bf16 autocast is not used: fp32 weights)."""
    model = copy.deepcopy(run.model).cpu().float().to(memory_format=torch.contiguous_format)
    tc = run.config.train
    return PixelModel(model, run.facts.mean, run.facts.std, tc.tta, tc.tta_shifts).eval()


def metadata(run) -> dict[str, str]:
    """What the file says about itself (ONNX metadata_props: strings only)."""
    m, f = run.metrics or {}, run.facts
    return {
        "fmnist_version": __version__, "model": run.config.model.name,
        "model_args": json.dumps(f.model_args), "class_names": json.dumps(list(f.class_names)),
        "dataset": run.config.data.dataset, "input": INPUT_SPEC, "input_name": INPUT,
        "outputs": "logits (N, C) float32; probabilities (N, C) float32, softmax of logits",
        "mean": repr(f.mean), "std": repr(f.std), "scaling": f.scaling,
        "test_accuracy": json.dumps(m.get("test_acc")), "test_split": m.get("split", "test"),
        "seed": str(run.config.train.seed), "trained_precision": f.precision,
        "tta": json.dumps(bool(run.config.train.tta)),
        "tta_shifts": json.dumps(bool(run.config.train.tta_shifts)),
    }


def export_proto(module: PixelModel):
    """torch.onnx's dynamo exporter -> an onnx.ModelProto with a dynamic batch dimension."""
    need("onnxscript", "ONNX export")
    example = torch.zeros(2, 28, 28, dtype=torch.uint8)
    try:
        with _quiet():
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=OPSET, input_names=[INPUT],
                output_names=list(OUTPUTS), dynamic_shapes=({0: torch.export.Dim("batch")},),
                optimize=True, verbose=False)
    except Exception as exc:  # the exporter's own errors are long; the cause is the last line
        last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
        raise FmnistError(f"torch.onnx.export failed for this model: {last}") from exc
    return program.model_proto


@contextlib.contextmanager
def _quiet():
    """The exporter logs warnings about torchvision ops and deprecations that are no concern
    of a user exporting a classifier; its errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@dataclass
class Verification:
    """Torch (fp32) against onnxruntime on the same images."""

    n: int  # images scored
    max_diff: float  # max |logit difference|
    agree: int  # images whose top class is the same
    accuracy: float  # onnxruntime's accuracy on them
    tolerance: float
    seconds: float  # onnxruntime's time for all of them

    @property
    def ok(self) -> bool:
        return bool(self.max_diff <= self.tolerance)

    def summary(self) -> str:
        return (f"onnxruntime vs torch (fp32) on {self.n:,} test images: max |logit difference| "
                f"{self.max_diff:.2e} (tolerance {self.tolerance:.0e}), top classes agree on "
                f"{self.agree:,}/{self.n:,} ({100 * self.agree / max(self.n, 1):.2f}%), "
                f"accuracy {100 * self.accuracy:.2f}%, {self.seconds:.2f}s in onnxruntime")


def session(model_bytes: bytes, threads: int = 0):
    """An onnxruntime CPU session for the file's bytes."""
    ort = need("onnxruntime", "Scoring an ONNX model")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default (every core)
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def verify(module: PixelModel, model_bytes: bytes, images: np.ndarray, labels: np.ndarray,
           tolerance: float = TOLERANCE, batch_size: int = 1000) -> Verification:
    """Score `images` with torch and with onnxruntime; compare logits and top classes."""
    sess = session(model_bytes, torch.get_num_threads())
    ref, got, seconds = [], [], 0.0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        ref.append(module(torch.from_numpy(x))[0].numpy())
        t0 = time.perf_counter()
        got.append(sess.run([OUTPUTS[0]], {INPUT: x})[0])
        seconds += time.perf_counter() - t0
    ref, got = np.concatenate(ref), np.concatenate(got)
    max_diff = float(np.max(np.abs(ref - got))) if len(ref) else 0.0
    if not np.isfinite(max_diff):
        max_diff = float("inf")
    pred = got.argmax(1)
    return Verification(len(images), max_diff, int((ref.argmax(1) == pred).sum()),
                        float((pred == labels).mean()) if len(labels) else float("nan"),
                        tolerance, seconds)


def finish_proto(proto, meta: dict[str, str]) -> bytes:
    """Metadata set, checked, self-contained: the bytes of the file."""
    onnx = need("onnx", "ONNX export")
    from onnx.external_data_helper import uses_external_data

    bad = sorted(k for k, v in meta.items() if not isinstance(v, str))
    if bad:  # metadata_props hold strings; a hand-edited run file could give a number
        raise FmnistError(f"the run's {bad[0]} is not a name ({meta[bad[0]]!r}); restore the "
                          "run's config.json and metrics.json written by `fmnist train`")
    onnx.helper.set_model_props(proto, meta)
    proto.doc_string = f"fmnist {meta['model']} classifier; input {meta['input']}"
    if any(uses_external_data(t) for t in proto.graph.initializer):
        raise FmnistError("the exported graph keeps weights in an external file; this "
                          "version of torch/onnx is not supported for a one-file export")
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < OPSET:
        raise FmnistError(f"the exported graph has opset {opset}, below {OPSET}")
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def verified_onnx(run, out: Path, images: np.ndarray, labels: np.ndarray,
                  tolerance: float = TOLERANCE) -> tuple[bytes, Verification]:
    """The file's bytes, exported and verified on `images`, in memory: the caller writes them
    with the other files of its set. `out` (where they will go) is only named in a refusal."""
    module = pixel_model(run)
    model_bytes = finish_proto(export_proto(module), metadata(run))
    check = verify(module, model_bytes, images, labels, tolerance)
    if not check.ok:
        raise FmnistError(f"{out}: not written: {check.summary()}; the exported graph does "
                          "not compute what the run's model does")
    return model_bytes, check


def export_onnx(run, out: str | os.PathLike, images: np.ndarray, labels: np.ndarray,
                tolerance: float = TOLERANCE) -> tuple[Path, Verification]:
    """Export, verify on `images`, and only then write `out` (atomically): a model that
    disagrees with torch beyond `tolerance` is refused and nothing is written."""
    out = check_target(out)
    model_bytes, check = verified_onnx(run, out, images, labels, tolerance)
    return atomic_write_bytes(out, model_bytes), check
