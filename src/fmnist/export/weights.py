"""A run's weights as safetensors plus a JSON model card: loadable without pickle.

model.safetensors  the state dict in fp32 (a bf16-trained run too), contiguous, CPU
model.json         the card: model name and arguments, classes, input scaling, accuracy
                   with its split, weights and seed; the same JSON rides in the
                   safetensors header's metadata, so the weights file alone is enough
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import FmnistError
from ..fsutil import atomic_write_files, read_limited
from . import need

CARD_FORMAT = 1
WEIGHTS_FILE, CARD_FILE = "model.safetensors", "model.json"
MAX_WEIGHTS_BYTES = 1 << 30  # 100 M fp32 parameters (models.MAX_PARAMETERS) plus headroom


def model_card(run) -> dict:
    """Everything needed to rebuild the model and feed it, and what it scored."""
    f, m = run.facts, run.metrics or {}
    return {
        "format": CARD_FORMAT, "fmnist_version": __version__, "torch_version": torch.__version__,
        "model": run.config.model.name, "model_args": f.model_args,
        "class_names": list(f.class_names), "dataset": run.config.data.dataset,
        "input": {"shape": [1, 28, 28], "pixels": "0 = black background, garment light",
                  "scaling": f.scaling, "mean": f.mean, "std": f.std,
                  "formula": "x = (pixels / 255 - mean) / std"},
        "tta": bool(run.config.train.tta),
        "tta_shifts": bool(run.config.train.tta_shifts),  # older cards lack it: False
        "accuracy": {"value": m.get("test_acc"), "split": m.get("split", "test"),
                     "weights": m.get("weights"), "seed": run.config.train.seed,
                     "split_seed": run.config.data.split_seed,
                     "images": f.test_size or None, "trained_precision": f.precision},
        "weights": {"file": "model.safetensors", "dtype": "float32"},
    }


def export_safetensors(run, out_dir: str | os.PathLike,
                       images: np.ndarray | None = None) -> tuple[list[Path], str]:
    """Write out_dir/model.safetensors and out_dir/model.json (both or neither), once the
    bytes, read back without pickle into a model built from the card alone, give the run's
    fp32 logits on `images` (uint8 (N, 28, 28); some of the test split); and what was checked."""
    files, checked = safetensors_files(run, out_dir, images)
    return atomic_write_files(files), checked


def safetensors_files(run, out_dir: str | os.PathLike,
                      images: np.ndarray | None = None) -> tuple[dict[Path, bytes], str]:
    """export_safetensors' two files as bytes, checked, for the caller to write in its set."""
    st = need("safetensors.torch", "safetensors export")
    out_dir = Path(out_dir)
    card = model_card(run)
    # fp32 for floating tensors (BatchNorm's integer step counter stays int64); clone so
    # tensors that share memory are saved as separate ones, as safetensors requires
    state = {k: (v.float() if v.is_floating_point() else v).detach().cpu().contiguous().clone()
             for k, v in run.model.state_dict().items()}
    blob = st.save(state, metadata={"format": "pt", "fmnist_card": json.dumps(card)})
    checked = _check_round_trip(run, blob, card, images, out_dir / WEIGHTS_FILE)
    card_text = json.dumps(card, indent=2) + "\n"  # as atomic_write_json writes it
    return {out_dir / WEIGHTS_FILE: blob, out_dir / CARD_FILE: card_text.encode("utf-8")}, checked


@torch.no_grad()
def _check_round_trip(run, blob: bytes, card: dict, images: np.ndarray | None, path: Path) -> str:
    from ..models import build_model
    from .onnx import PixelModel, pixel_model

    st = need("safetensors.torch", "safetensors export")
    model = build_model(card["model"], **card["model_args"])
    model.load_state_dict(st.load(blob))
    x = torch.from_numpy(np.asarray(images if images is not None else
                                    np.zeros((1, 28, 28), np.uint8))[:1000])
    inp = card["input"]
    got = PixelModel(model.eval(), inp["mean"], inp["std"], card["tta"],
                     card.get("tta_shifts", False))(x)[0]
    diff = float((got - pixel_model(run)(x)[0]).abs().max())
    if not diff <= 1e-5:  # the same fp32 ops on the same weights: equal up to kernel choice
        raise FmnistError(f"{path}: not written: the weights read back give logits "
                          f"{diff:.2e} away from the run's")
    return (f"safetensors read back without pickle into a {card['model']!r} built from the "
            f"card: max |logit difference| {diff:.1e} on {len(x):,} test images")


def load_safetensors(path: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """The model (eval mode, fp32, CPU) and card of a model.safetensors; no pickle involved."""
    from ..models import build_model

    st = need("safetensors.torch", "Loading safetensors")
    safe_open = need("safetensors", "Loading safetensors").safe_open
    path = Path(path)
    read_limited(path, MAX_WEIGHTS_BYTES, "safetensors file")  # a clear error for a bad path
    try:
        with safe_open(str(path), framework="pt") as f:
            card = json.loads((f.metadata() or {}).get("fmnist_card", "null"))
        state = st.load_file(str(path))
    except Exception as exc:  # safetensors' own errors for a corrupt header
        raise FmnistError(f"{path}: not a safetensors file we can read ({exc}); export the "
                          "run again") from None
    if not isinstance(card, dict) or "model" not in card:
        raise FmnistError(f"{path}: has no fmnist model card in its metadata; export it with "
                          "`fmnist export RUN_DIR --format safetensors`")
    why = _card_problem(card)
    if why:
        raise FmnistError(f"{path}: its model card {why}; export the run again")
    try:
        model = build_model(card["model"], **card["model_args"])
    except FmnistError as exc:  # an unknown model, an argument it does not take
        raise FmnistError(f"{path}: its model card names a model that cannot be built ({exc}); "
                          "export the run again") from None
    # load_state_dict checks names and shapes but casts dtypes silently: an int32 tensor
    # where the model has float32 would load as garbage, so both are compared here
    want = model.state_dict()
    odd = sorted(set(want) ^ set(state)) or [k for k in want if state[k].dtype != want[k].dtype
                                              or state[k].shape != want[k].shape]
    if odd:
        k = odd[0]
        has = f"{state[k].dtype} {tuple(state[k].shape)}" if k in state else "missing"
        wants = f"{want[k].dtype} {tuple(want[k].shape)}" if k in want else "no such tensor"
        raise FmnistError(f"{path}: its tensors do not fit a {card['model']!r} with "
                          f"{card['model_args']}: {k} is {has}, the model has {wants}; export "
                          "the run again")
    model.load_state_dict(state)
    return model.eval(), card


def _card_problem(card: dict) -> str | None:
    """What is wrong with a card's fields that loading and feeding the model use, else None."""
    if not isinstance(card["model"], str):
        return "has no model name"
    args = card.get("model_args")
    if not isinstance(args, dict):
        return "has no model_args object (the model's keyword arguments)"
    names = card.get("class_names")
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        return "has no class_names list"
    if len(names) != args.get("num_classes", 10):
        return f"has {len(names)} class names for a model of {args.get('num_classes', 10)} outputs"
    inp = card.get("input")
    ok = isinstance(inp, dict) and all(
        isinstance(inp.get(k), (int, float)) and not isinstance(inp.get(k), bool)
        and math.isfinite(inp[k]) for k in ("mean", "std"))
    if not ok or not inp["std"] > 0:
        return "has no input scaling (input.mean and a positive input.std)"
    if any(not isinstance(card.get(k, False), bool) for k in ("tta", "tta_shifts")):
        return "has tta or tta_shifts that is not true or false"
    return None
