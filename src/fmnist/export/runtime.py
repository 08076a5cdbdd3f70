"""Scoring an exported model with onnxruntime alone: `fmnist predict --onnx MODEL.onnx`.

No torch here (nor in what it imports: the data layer, picture preparation and the CSV
writer are numpy and Pillow), so a service that ships only the .onnx file and
onnxruntime starts in a fraction of a second and needs no 700 MB wheel.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FmnistError
from ..fsutil import read_limited
from ..prediction import Prediction, image_batch, predict_with
from . import need

MAX_MODEL_BYTES = 1 << 30  # 100 M parameters in fp32 (models.MAX_PARAMETERS) is 400 MB
OUTPUT = "probabilities"  # the output scored; onnx.OUTPUTS names it too (that module needs torch)


@dataclass
class OnnxClassifier:
    """An ONNX file written by `fmnist export`: its onnxruntime session and metadata."""

    path: Path
    session: object  # onnxruntime.InferenceSession
    meta: dict[str, str]
    class_names: tuple[str, ...]  # index -> name, as many as the graph's outputs

    @classmethod
    def load(cls, path: str | os.PathLike, threads: int = 0) -> "OnnxClassifier":
        ort = need("onnxruntime", "Scoring an ONNX model")
        path = Path(path)
        data = read_limited(path, MAX_MODEL_BYTES, "ONNX model")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (every core)
        options.log_severity_level = 3
        try:
            sess = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own classes for a bad protobuf
            raise FmnistError(f"{path}: not an ONNX model onnxruntime can load "
                              f"({str(exc).splitlines()[0][:200]}); export it again with "
                              "`fmnist export RUN_DIR`") from None
        meta = dict(sess.get_modelmeta().custom_metadata_map)
        inputs = sess.get_inputs()
        if "class_names" not in meta or [i.name for i in inputs] != [meta.get("input_name")]:
            raise FmnistError(f"{path}: not a model written by `fmnist export` (no class names "
                              "or pixel input in its metadata); export the run with fmnist")
        names = _class_names(path, meta)
        why = _graph_problem(inputs[0], sess.get_outputs(), len(names))
        if why:  # metadata copied onto another graph: refused here, not by session.run
            raise FmnistError(f"{path}: not a model written by `fmnist export` ({why}); export "
                              "the run with fmnist")
        return cls(path, sess, meta, names)

    def predict(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """(N, C) float64 probabilities for uint8 images (N, 28, 28), as Run.predict."""
        images = image_batch(images, "the ONNX model")
        name = self.meta["input_name"]
        out = []
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size]
            try:
                (probs,) = self.session.run([OUTPUT], {name: x})
            except Exception as exc:  # onnxruntime's own classes: a graph that fails on real input
                raise FmnistError(f"{self.path}: onnxruntime could not run it "
                                  f"({str(exc).splitlines()[0][:200]}); export the run again "
                                  "with `fmnist export RUN_DIR`") from None
            if probs.shape != (len(x), len(self.class_names)):
                raise FmnistError(f"{self.path}: gave probabilities of shape {probs.shape} for "
                                  f"{len(x)} images and {len(self.class_names)} classes; export "
                                  "the run again with `fmnist export RUN_DIR`")
            out.append(probs)
        if not out:
            return np.zeros((0, len(self.class_names)))
        probs = np.concatenate(out).astype(np.float64)
        return probs / probs.sum(1, keepdims=True)  # rows sum to 1 in float64, as torch's


def _class_names(path: Path, meta: dict[str, str]) -> tuple[str, ...]:
    try:
        names = json.loads(meta["class_names"])
    except (json.JSONDecodeError, RecursionError):
        names = None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise FmnistError(f"{path}: its class_names metadata is not a list of names; "
                          "export the run again")
    return tuple(names)


def _graph_problem(inp, outputs, classes: int) -> str | None:
    """What in the graph's signature differs from `fmnist export`'s, else None: input uint8
    (N, 28, 28); output `probabilities` float32 (N, C), C = the number of class names."""
    if inp.type != "tensor(uint8)" or len(inp.shape) != 3 or list(inp.shape[1:]) != [28, 28]:
        return f"input {inp.name} is {inp.type} {inp.shape}, not uint8 (N, 28, 28)"
    out = next((o for o in outputs if o.name == OUTPUT), None)
    if out is None:
        return f"no {OUTPUT!r} output"
    if out.type != "tensor(float)" or len(out.shape) != 2:
        return f"output {OUTPUT} is {out.type} {out.shape}, not float32 (N, C)"
    if not isinstance(out.shape[1], int):
        return f"output {OUTPUT} has no fixed number of classes ({out.shape[1]!r})"
    if out.shape[1] != classes:
        return (f"{classes} class names in its metadata for {out.shape[1]} outputs; every "
                "class needs its name")
    return None


def predict_onnx(model: str | os.PathLike, images: list[Path] | None = None,
                 split: str = "test", out: Path | None = None,
                 data_dir: str | os.PathLike | None = None, threads: int = 0) -> Prediction:
    """`fmnist predict --onnx`: pictures, IDX files or a split of the model's data set."""
    clf = OnnxClassifier.load(model, threads)
    dataset = clf.meta.get("dataset", "fashion-mnist")
    return predict_with(clf.predict, clf.class_names, dataset, clf.path.parent, images, split,
                        out, data_dir)
