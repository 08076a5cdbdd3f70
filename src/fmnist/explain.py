"""`fmnist explain RUN_DIR`: what a trained model learned, as figures in the run directory.

  explain-ig.png, explain-occlusion.png   where the model looks: Integrated Gradients and
                                          occlusion (Captum) for a fixed, stratified sample
                                          of test images, two right and two wrong per class
  explain-tsne.png                        what its penultimate features separate: t-SNE of
                                          the 10,000 test images' features (after PCA)
  explain-filters.png                     its first convolution's filters (conv models)
  explain-class-means.png                 each class's mean image as the model sees it
  explain.json                            the sample, the settings, the timings, what was
                                          skipped and why
The model runs in fp32 without test-time augmentation: gradients under bf16 autocast are
too coarse to draw, so a handful of predictions may differ from predictions.csv's.
Layers are found generically: the penultimate features are the input of the last Linear
layer (a forward pre-hook), the first layer the first Conv2d (a PixelUnshuffle before it is
folded into its filters). A model without them (logreg has no hidden features, an MLP no
convolution) is said so in explain.json and the report, and the other figures are drawn.
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .config import _check, _check_numbers, setting
from .extras import need

if TYPE_CHECKING:  # torch is imported where it is used: `fmnist --help` builds this module's flags
    import torch
    from torch import nn



@dataclass(frozen=True)
class ExplainConfig:
    per_class: int = setting(2, "right and as many wrong test images per class in the attribution maps")
    ig_steps: int = setting(32, "Integrated Gradients: steps along the path from the black image")
    window: int = setting(4, "occlusion: side of the square patch blacked out, in pixels")
    stride: int = setting(2, "occlusion: step between patches, in pixels")
    pca_dims: int = setting(50, "PCA dimensions of the features before t-SNE")
    perplexity: float = setting(30.0, "t-SNE perplexity")
    tsne_iter: int = setting(500, "t-SNE iterations, the first 250 with early exaggeration (500: "
                             "under a minute for 10,000 images on one core; sklearn's 1000 "
                             "takes 1.5x as long for a map that looks the same)")
    seed: int = setting(0, "the sample of test images and the t-SNE")

    def __post_init__(self) -> None:
        _check_numbers(self)
        _check(1 <= self.per_class <= 10, "per_class", self.per_class, "must be in 1..10")
        _check(2 <= self.ig_steps <= 1000, "ig_steps", self.ig_steps, "must be in 2..1000")
        _check(1 <= self.window <= 28, "window", self.window, "must be in 1..28")
        _check(1 <= self.stride <= self.window, "stride", self.stride, f"must be in 1..window={self.window}")
        _check(2 <= self.pca_dims <= 784, "pca_dims", self.pca_dims, "must be in 2..784")
        _check(2 <= self.perplexity <= 100, "perplexity", self.perplexity, "must be in 2..100")
        _check(250 <= self.tsne_iter <= 5000, "tsne_iter", self.tsne_iter, "must be in 250..5000")


@dataclass
class Explained:
    files: list[Path]
    notes: dict[str, str] = field(default_factory=dict)  # figure -> why it was not drawn
    seconds: dict[str, float] = field(default_factory=dict)


# --- the layers -------------------------------------------------------------------------

def penultimate_layer(model: nn.Module) -> nn.Linear | None:
    """The last Linear layer when some Conv2d or Linear precedes it (its input is then a
    learned feature vector), else None (logistic regression: its input is the pixels)."""
    from torch import nn

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    last = next((m for m in reversed(layers) if isinstance(m, nn.Linear)), None)
    return last if last is not None and layers.index(last) > 0 else None


def first_filters(model: nn.Module) -> tuple[np.ndarray, int] | None:
    """The first Conv2d's filters as pixels see them, (O, k*r, k*r), and r, the side of the
    pixel blocks it reads (1: plain pixels); None without a convolution.

    A PixelUnshuffle(r) before it turns each r x r pixel block into channels, so a k x k
    filter over those channels is a (k*r) x (k*r) filter over pixels: pixel_shuffle puts
    every weight back where its pixel is (channel c*r*r + i*r + j, tap (a, b) -> (a*r + i, b*r + j))."""
    import torch
    from torch import nn

    r = 1
    for m in model.modules():
        if isinstance(m, nn.PixelUnshuffle):
            r *= m.downscale_factor
        if isinstance(m, nn.Conv2d):
            w = m.weight.detach().float().cpu()  # (O, C*r*r, k, k)
            if r > 1:
                w = torch.pixel_shuffle(w, r)  # (O, C, k*r, k*r)
            return w.mean(1).numpy(), r  # one input channel (grey): the mean is the filter itself
    return None


def fp32_copy(model: nn.Module, device: torch.device) -> nn.Module:
    import torch

    return copy.deepcopy(model).float().to(device, memory_format=torch.contiguous_format).eval()


def logits_and_features(model: nn.Module, x: torch.Tensor, batch: int = 1000):
    """(logits (N, C), features (N, F) or None): the features are the input of the
    penultimate layer's Linear, caught by a forward pre-hook."""
    import torch

    layer, caught = penultimate_layer(model), []
    hook = layer.register_forward_pre_hook(lambda _m, inp: caught.append(inp[0].flatten(1).cpu())) \
        if layer is not None else None
    try:
        with torch.no_grad():
            logits = torch.cat([model(x[i:i + batch]).float().cpu() for i in range(0, len(x), batch)])
    finally:
        if hook is not None:
            hook.remove()
    return logits, (torch.cat(caught).float() if caught else None)


# --- what is shown ----------------------------------------------------------------------

def stratified_sample(labels: np.ndarray, preds: np.ndarray, per_class: int, seed: int,
                      classes: int) -> np.ndarray:
    """(classes, 2 * per_class) test indices: per true class `per_class` right then
    `per_class` wrong predictions, drawn by `seed` (-1 where a class has too few)."""
    rng = np.random.default_rng(seed)
    out = np.full((classes, 2 * per_class), -1, np.int64)
    for c in range(classes):
        for j, ok in enumerate((True, False)):
            pool = np.flatnonzero((labels == c) & ((preds == labels) == ok))
            pick = np.sort(rng.choice(pool, size=min(per_class, pool.size), replace=False))
            out[c, j * per_class: j * per_class + pick.size] = pick
    return out


def attributions(model: nn.Module, x: torch.Tensor, target: torch.Tensor, black: float,
                 cfg: ExplainConfig) -> dict[str, np.ndarray]:
    """{method: (K, 28, 28)} attributions of each image to its `target` class.

    Both start from a black image (every pixel 0 before scaling, `black` after it), not
    from zeros of the scaled input, which would be a grey picture the model never saw."""
    import torch

    attr = need("captum.attr", "fmnist explain")
    baseline = torch.full_like(x, black)
    ig = attr.IntegratedGradients(model).attribute(
        x, baselines=baseline, target=target, n_steps=cfg.ig_steps, internal_batch_size=256)
    occ = attr.Occlusion(model).attribute(
        x, baselines=black, target=target, sliding_window_shapes=(1, cfg.window, cfg.window),
        strides=(1, cfg.stride, cfg.stride), perturbations_per_eval=64)
    return {"Integrated Gradients": ig[:, 0].detach().cpu().numpy(),
            "Occlusion": occ[:, 0].detach().cpu().numpy()}


def embed(features: np.ndarray, cfg: ExplainConfig) -> np.ndarray:
    """(N, 2) t-SNE of the features after PCA to `pca_dims` (t-SNE's neighbour search and
    gradient scale with the dimension; 50 PCA dimensions keep the structure, 2-4x faster)."""
    decomposition = need("sklearn.decomposition", "fmnist explain")
    manifold = need("sklearn.manifold", "fmnist explain")
    dims = min(cfg.pca_dims, features.shape[1], len(features))
    reduced = decomposition.PCA(dims, random_state=cfg.seed).fit_transform(features)
    tsne = manifold.TSNE(2, perplexity=min(cfg.perplexity, (len(features) - 1) / 3), init="pca",
                         learning_rate="auto", max_iter=cfg.tsne_iter, random_state=cfg.seed)
    return tsne.fit_transform(reduced.astype(np.float32))


def class_means(images: np.ndarray, labels: np.ndarray, classes: int, mean: float, std: float) -> np.ndarray:
    """(C, 28, 28): each class's mean image after the run's input scaling, (x/255 - mean) / std."""
    out = np.zeros((classes, 28, 28))
    for c in range(classes):
        if (labels == c).any():
            out[c] = (images[labels == c].mean(0) / 255.0 - mean) / std
    return out


# --- the command ------------------------------------------------------------------------

def explain_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                device: str = "auto", cfg: ExplainConfig | None = None,
                log: Callable[[str], None] | None = None) -> Explained:
    """Draw every figure the run's model allows into its directory; returns what was written."""
    from . import runs
    from .api import data_folder, open_run
    from .data import load
    from .plots import explain as P
    from .plots.style import save_figure

    import torch

    cfg, log = cfg or ExplainConfig(), log or (lambda _m: None)
    for module in ("captum.attr", "sklearn.manifold"):  # a missing extra fails before any work
        need(module, "fmnist explain")
    run = open_run(run_dir, device)
    test = load(run.config.data.dataset, "test", data_dir=data_folder(run.config, data_dir))
    facts, names, d = run.facts, run.facts.class_names, Path(run_dir)
    model = fp32_copy(run.model, run.parts.device)
    x = ((torch.from_numpy(test.images).float() / 255.0 - facts.mean) / facts.std).unsqueeze(1)  # (N, 1, 28, 28)
    out, seconds, notes = Explained([]), {}, {}

    t = time.perf_counter()
    logits, features = logits_and_features(model, x.to(run.parts.device))
    preds = logits.argmax(1).numpy()
    sample = stratified_sample(test.labels, preds, cfg.per_class, cfg.seed, len(names))
    chosen = sample[sample >= 0]
    maps = attributions(model, x[chosen].to(run.parts.device), torch.from_numpy(preds[chosen]).to(run.parts.device),
                        -facts.mean / facts.std, cfg)
    seconds["attributions"] = time.perf_counter() - t
    # the old explain.json goes before the first figure is replaced: an explain that stops
    # midway must not leave a record (sample, settings, what was skipped) vouching for a mix
    # of this explain's figures and the last one's; the new record is written last
    (d / runs.EXPLAIN).unlink(missing_ok=True)
    for (method, m), name in zip(maps.items(), ("explain-ig.png", "explain-occlusion.png")):
        full = np.zeros((*sample.shape, 28, 28))
        full[sample >= 0] = m
        out.files.append(save_figure(P.attribution_figure(test.images, full, sample, preds, test.labels,
                                                          names, method, cfg), d / name))
    log(f"attributions of {len(chosen)} test images: {seconds['attributions']:.1f}s")

    if features is None:
        notes["explain-tsne.png"] = (f"{run.config.model.name} has no hidden features: its last "
                                     "Linear layer reads the pixels, so there is nothing to map")
    else:
        t = time.perf_counter()
        xy = embed(features.numpy(), cfg)
        seconds["tsne"] = time.perf_counter() - t
        log(f"t-SNE of {len(xy):,} x {features.shape[1]} features: {seconds['tsne']:.1f}s")
        out.files.append(save_figure(P.tsne_figure(xy, test.labels, preds, test.images, names,
                                                   features.shape[1], cfg), d / "explain-tsne.png"))
    filters = first_filters(run.model)
    if filters is None:
        notes["explain-filters.png"] = f"{run.config.model.name} has no convolution, so no filters to draw"
    else:
        out.files.append(save_figure(P.filters_figure(*filters), d / "explain-filters.png"))
    means = class_means(test.images, test.labels, len(names), facts.mean, facts.std)
    out.files.append(save_figure(P.class_means_figure(means, names, facts.scaling), d / "explain-class-means.png"))
    for name in notes:  # a figure of an earlier model in the same folder would mislead
        (d / name).unlink(missing_ok=True)
    out.notes, out.seconds = notes, {k: round(v, 2) for k, v in seconds.items()}
    runs.save_explain(d, {"settings": asdict(cfg), "sample": sample.tolist(),
                          "accuracy_fp32": round(float((preds == test.labels).mean()), 4),
                          "files": [p.name for p in out.files], "skipped": notes, "seconds": out.seconds})
    return out
