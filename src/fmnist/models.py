"""Model registry: tiny factories for Fashion-MNIST classifiers.

Every model takes float32 (N, 1, 28, 28), already normalised, and returns (N, num_classes)
logits. `build_model(name, **kw)` checks the keywords against the factory's signature, so
a typo or an impossible value is a ConfigError naming the argument, not a TypeError.
"""
from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass
from numbers import Integral, Real
from typing import TYPE_CHECKING, Callable

from .errors import ConfigError
from .registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn
else:
    class _Torch:
        """torch (or torch.nn) imported on first use: `fmnist models` and `fmnist --help`
        list the registry without waiting ~1 s for torch to load."""

        def __init__(self, module: str) -> None:
            self._module = module

        def __getattr__(self, name: str):
            return getattr(importlib.import_module(self._module), name)

    torch, nn = _Torch("torch"), _Torch("torch.nn")


@dataclass(frozen=True)
class ModelSpec:
    name: str  # registry key, e.g. "cnn"
    factory: Callable[..., nn.Module]  # f(num_classes=10, **hyperparameters) -> module
    description: str  # one line, for `fmnist models`
    params: int | None = None  # trainable parameters at the defaults (tests check the figure);
    #                            None: counted by building the model when listed


MODELS = Registry[ModelSpec]("model")
# 400 MB of fp32 weights, 1.6 GB with gradients and Adam's two moments: far beyond what a
# 28x28 classifier needs (the largest registered, p1, has 3.3 M)
MAX_PARAMETERS = 100_000_000
MAX_WIDTH = 65_536  # neurons or channels in one layer
MAX_DEPTH = 64  # hidden layers of an MLP, residual blocks per stage


def register_model(name: str, description: str, params: int | None = None) -> Callable:
    """Decorator: add a factory to MODELS; a duplicate name raises ValueError."""
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.add(name, ModelSpec(name, factory, description, params))
        return factory
    return wrap


def build_model(name: str, num_classes: int = 10, **kwargs) -> nn.Module:
    """A fresh model with its default init; hyperparameters as keywords (see `MODELS`)."""
    spec = MODELS.get(name)  # UnknownNameError listing the known names
    params = inspect.signature(spec.factory).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())  # a factory's **kw
    for key in kwargs:
        if not open_ended and key not in params:
            known = ", ".join(p for p in params if p != "num_classes") or "none"
            raise ConfigError(f"model {name!r} has no argument {key!r}; it takes: {known}")
    _check_int("num_classes", num_classes, low=1, high=100_000)
    try:
        # count the parameters on the meta device first (no memory): a size that asks for
        # hundreds of GB is refused here, not by the allocator halfway through
        with torch.device("meta"):
            n = count_parameters(spec.factory(num_classes=num_classes, **kwargs))
        if n > MAX_PARAMETERS:
            raise ConfigError(f"model {name!r} with {kwargs or 'its defaults'} would have {n:,} "
                              f"parameters ({4 * n / 2**30:.1f} GiB of weights); at most "
                              f"{MAX_PARAMETERS:,} are built: choose smaller sizes")
        return spec.factory(num_classes=num_classes, **kwargs)
    except TypeError as err:  # a value the factory's own checks missed: still the user's fix
        raise ConfigError(f"model {name!r}: bad argument: {err}") from err


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_table() -> list[tuple[str, int, str]]:
    """(name, trainable parameters at default settings, description) for each model."""
    specs = [MODELS.get(n) for n in MODELS]
    return [(s.name, s.params if s.params is not None else count_parameters(build_model(s.name)),
             s.description) for s in specs]


def format_model_table() -> str:
    """`fmnist models`: one line per model."""
    rows = model_table()
    width = max(len(r[0]) for r in rows)
    return "\n".join([f"{'model':<{width}}  {'parameters':>11}  description"] + [
        f"{name:<{width}}  {params:>11,}  {description}" for name, params, description in rows])


# --- argument checks: the factories validate, build_model only routes ---------------------

def _check_int(arg: str, value: object, low: int = 1, high: int = MAX_WIDTH) -> int:
    # bool is an int subclass, but `width=True` is a mistake, not a width of 1
    if isinstance(value, bool) or not isinstance(value, Integral) or not low <= value <= high:
        raise ConfigError(f"{arg} must be an integer in {low}..{high:,}, got {value!r}")
    return int(value)


def _check_dropout(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, Real) or not 0.0 <= p < 1.0:
        raise ConfigError(f"dropout must be a number in [0, 1), got {p!r}")
    return float(p)


def _check_widths(arg: str, value: object, length: int | None = None) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or (length is not None and len(value) != length) \
            or not 1 <= len(value) <= MAX_DEPTH:
        size = f"{length} " if length else ""
        raise ConfigError(f"{arg} must be a tuple of {size}positive integers (at most "
                          f"{MAX_DEPTH}), got {value!r}")
    return tuple(_check_int(f"{arg}[{i}]", v) for i, v in enumerate(value))


def _dropout(p: float) -> nn.Module:
    return nn.Dropout(p) if p > 0 else nn.Identity()  # Identity: no op in the graph at p=0


# --- reference models ---------------------------------------------------------------------

class _Captured(Exception):
    """Raised by whiten_first_conv's hook once it holds the first conv layer's input."""


def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set the first conv layer's filters to the whitening of its input patches (airbench).

    images: (N, 1, 28, 28) normalised training images (2,000 are plenty). The layers before
    the conv (the cnn's pixel unshuffle) run on them; the covariance of the conv's input
    patches gives eigenvectors v with eigenvalues l, and the filters become the leading
    ones as +v / sqrt(l + eps) and -v / sqrt(l + eps): a decorrelated, contrast-equalised
    first layer that ReLU cannot half-erase, so training starts from useful features.
    Fashion-MNIST, cnn, validation accuracy: it speeds the start (3 epochs on 15k images
    88.20 -> 89.04%) but not the default recipe's 8 epochs (seeds 0-2: 93.32, 93.08, 93.08%
    without, 93.00, 93.08, 92.78% with), so it is opt-in: --whiten.
    """
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ConfigError(f"whiten: {type(model).__name__} has no conv layer; drop --whiten")
    if conv.groups != 1 or conv.out_channels < 2:
        raise ConfigError(f"whiten: the first conv layer ({conv}) is not a plain conv with "
                          "2 or more filters; drop --whiten")
    seen: list[torch.Tensor] = []

    def capture(_module: nn.Module, args: tuple) -> None:
        seen.append(args[0])
        raise _Captured  # the layers after the conv need not run

    hook = conv.register_forward_pre_hook(capture)
    was_training = model.training
    try:
        model.eval()  # batch norm's running statistics stay untouched
        with torch.no_grad():
            model(images)
    except _Captured:
        pass
    finally:
        hook.remove()
        model.train(was_training)
    x = seen[0].float()  # (N, C, H, W): what the conv sees
    patches = torch.nn.functional.unfold(x, conv.kernel_size, conv.dilation, conv.padding,
                                         conv.stride)  # (N, C*kh*kw, L)
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])  # (N*L, C*kh*kw)
    cov = (patches.T @ patches / len(patches)).double()
    values, vectors = torch.linalg.eigh(cov)  # ascending
    k = min(conv.out_channels // 2, len(values))
    top = vectors[:, -k:].flip(1).T / (values[-k:].flip(0) + eps).sqrt()[:, None]  # (k, C*kh*kw)
    filters = torch.cat([top, -top]).float().view(2 * k, *conv.weight.shape[1:])
    with torch.no_grad():
        conv.weight[:2 * k].copy_(filters.to(conv.weight))  # an odd last filter keeps its init


@register_model("logreg", "multinomial logistic regression: Flatten -> Linear 784->10", params=7_850)
def logreg(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, num_classes))


@register_model("mlp", "TensorFlow tutorial MLP: 784 -> 128 ReLU -> 10", params=101_770)
def mlp(num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
    p = _check_dropout(dropout)
    return nn.Sequential(
        nn.Flatten(),  # (N, 784)
        nn.Linear(784, 128), nn.ReLU(), _dropout(p),  # (N, 128)
        nn.Linear(128, num_classes),
    )


@register_model("mlp2", "MLP 784 -> 256 -> 128 -> 10, ReLU, Glorot-uniform init", params=235_146)
def mlp2(num_classes: int = 10, hidden: tuple[int, ...] = (256, 128),
         dropout: float = 0.0) -> nn.Module:
    sizes = (784,) + _check_widths("hidden", hidden)
    p = _check_dropout(dropout)
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU(), _dropout(p)]
    layers.append(nn.Linear(sizes[-1], num_classes))
    for m in layers:
        if isinstance(m, nn.Linear):  # Keras defaults, so results compare with Keras ones
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


def _tf_init(model: nn.Module) -> nn.Module:
    """DeepOBS/TF init: weights truncated normal (std 0.05, cut at 2 std), biases 0.05."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.05, a=-0.1, b=0.1)
            nn.init.constant_(m.bias, 0.05)
    return model


def _two_conv_two_dense(pool: Callable[[], nn.Module], num_classes: int, p: float):
    # 5x5 'same' convs (padding 2) keep the size; each pool halves it: 28 -> 14 -> 7.
    return _tf_init(nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), pool(),  # (N, 32, 14, 14)
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), pool(),  # (N, 64, 7, 7)
        nn.Flatten(),  # (N, 3136)
        nn.Linear(7 * 7 * 64, 1024), nn.ReLU(), _dropout(p),  # (N, 1024)
        nn.Linear(1024, num_classes),
    ))


@register_model("2c2d", "DeepOBS fmnist_2c2d: conv32-pool-conv64-pool-fc1024-fc10", params=3_274_634)
def cnn_2c2d(num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
    """DeepOBS `fmnist_2c2d`: 5x5 'same' convs, 2x2/2 max-pools, TF-style init."""
    return _two_conv_two_dense(lambda: nn.MaxPool2d(2, 2), num_classes, _check_dropout(dropout))


@register_model("p1", "Balles & Hennig 2018 P1: 2c2d with 3x3/2 'same' max-pools", params=3_274_634)
def p1(num_classes: int = 10) -> nn.Module:
    """Fashion-MNIST net of "Dissecting Adam" (Balles & Hennig, arXiv 1705.07774), problem P1.

    The paper gives conv 32 5x5, max-pool 3x3/2, conv 64 5x5, max-pool 3x3/2, fc 1024, fc 10
    (ReLU) but not the padding. We take TensorFlow 'same' padding for convs and pools, as
    TF reference code of that time did (not checked here against the authors' repository).
    TF's 'same' 3x3/2 pool on an even size pads one row/column at the bottom/right only,
    so 28 -> 14 -> 7; we pad with -inf so the pad never wins the max. Shapes, and so the
    parameter count (3,274,634), equal 2c2d's; only the pool windows differ. Init as 2c2d.
    """
    def pool() -> nn.Module:
        return nn.Sequential(nn.ConstantPad2d((0, 1, 0, 1), float("-inf")), nn.MaxPool2d(3, 2))
    return _two_conv_two_dense(pool, num_classes, 0.0)


# --- fast modern models -------------------------------------------------------------------

def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    # bias=False: the batch norm right after subtracts the mean, a bias would be dead weight
    from .layers import Conv3x3  # nn.Conv2d with a faster bf16 weight gradient on small maps
    conv = Conv3x3(c_in, c_out) if stride == 1 else nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False)
    return [conv, nn.BatchNorm2d(c_out)]


def _conv_block(c_in: int, c_out: int, pool: bool = False) -> list[nn.Module]:
    # conv -> pool -> BN -> ReLU (airbench order): BN and ReLU then run on a quarter of the
    # pixels; max-pool commutes with ReLU, and with BN wherever BN's scale stays positive
    from .layers import Conv3x3  # nn.Conv2d with a faster bf16 weight gradient on small maps
    conv = Conv3x3(c_in, c_out)
    return [conv, *([nn.MaxPool2d(2)] if pool else []), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


@register_model("cnn", "default: fast 6-conv BN net, 16/48/128 wide; best accuracy per CPU s", params=235_338)
def cnn(num_classes: int = 10, widths: tuple[int, int, int] = (16, 48, 128),
        dropout: float = 0.0) -> nn.Module:
    """Airbench-style conv-BN-ReLU net sized for a 2-core CPU: 6.9 M MACs an image.

    Chosen with benchmarks/model_speed.py and 8-15 epoch trainings. Conv time mostly
    follows MACs, so the wide layers sit on the small maps and nothing runs at 28x28: the
    space-to-depth stem (a 3x3 conv on 2x2 pixel blocks, i.e. a 6x6 stride-2 conv) replaced
    conv@28 + max-pool, 11% faster at the same accuracy; widths 16/48/128 train 11% faster
    than 24/48/96 (same MACs) at the same accuracy. 16/32/128 trains a step 19-26% faster
    (bf16 kernels work in blocks of 32 channels) but lost 0.3 points: default recipe, seeds
    0-2, test 92.86/92.71/92.69% (val 93.18/92.94/92.80%) against 93.03 +/- 0.04%. Train it
    under bf16 autocast with channels_last: ~2.5x the fp32 speed on an avx512_bf16 CPU.
    """
    w1, w2, w3 = _check_widths("widths", widths, 3)
    p = _check_dropout(dropout)
    return nn.Sequential(
        nn.PixelUnshuffle(2),  # (N, 4, 14, 14): each 2x2 pixel block becomes 4 channels
        *_conv_block(4, w1), *_conv_block(w1, w1),  # (N, w1, 14, 14)
        *_conv_block(w1, w2, pool=True), *_conv_block(w2, w2),  # (N, w2, 7, 7)
        *_conv_block(w2, w3, pool=True), *_conv_block(w3, w3),  # (N, w3, 3, 3)
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), _dropout(p),  # (N, w3)
        nn.Linear(w3, num_classes),
    )


@functools.cache
def _block_class() -> type:
    """The residual block's class, defined once torch is loaded (it subclasses nn.Module)."""
    class _Block(nn.Module):
        """Basic residual block (He et al. 2016): ReLU(BN(conv(ReLU(BN(conv x)))) + shortcut)."""

        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(*_conv_bn(c_in, c_out, stride), nn.ReLU(inplace=True),
                                      *_conv_bn(c_out, c_out))
            # 1x1 strided projection only where the shape changes, identity elsewhere
            self.short = (nn.Identity() if stride == 1 and c_in == c_out else
                          nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                        nn.BatchNorm2d(c_out)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.body(x) + self.short(x))
    return _Block


STEMS = ("pool", "unshuffle")


@register_model("resnet", "small ResNet: 3 stages of residual blocks, widths w/2w/4w", params=308_074)
def resnet(num_classes: int = 10, width: int = 32, blocks: int = 1,
           dropout: float = 0.0, stem: str = "pool") -> nn.Module:
    """ResNet for 28x28: stem, then `blocks` residual blocks per stage at 14, 7 and 4 px.

    At width 32, blocks 1: 10 M MACs an image, 1.6x the cost of `cnn`; meant for longer
    runs where `cnn` saturates. Global average pooling keeps the head at 4w*10 weights.
    stem "pool": conv at 28x28, then max-pool; "unshuffle": cnn's space-to-depth stem, a conv
    on 2x2 pixel blocks at 14x14. The 28x28 conv, its max-pool and their gradients are ~20% of
    a bf16 training step (profiled on 2 Xeon cores), so "unshuffle" trains ~20% faster.
    """
    w = _check_int("width", width)
    n = _check_int("blocks", blocks, high=MAX_DEPTH)
    p = _check_dropout(dropout)
    if stem not in STEMS:
        raise ConfigError(f"model argument stem={stem!r}: use one of {', '.join(STEMS)}")
    stages: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate([(w, w), (w, 2 * w), (2 * w, 4 * w)]):
        stride = 1 if i == 0 else 2
        block = _block_class()
        stages += [block(c_in, c_out, stride)] + [block(c_out, c_out, 1) for _ in range(n - 1)]
    return nn.Sequential(
        *(_conv_block(1, w, pool=True) if stem == "pool"  # (N, w, 14, 14)
          else [nn.PixelUnshuffle(2), *_conv_block(4, w)]),
        *stages,  # (N, w, 14, 14) -> (N, 2w, 7, 7) -> (N, 4w, 4, 4)
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), _dropout(p),  # (N, 4w)
        nn.Linear(4 * w, num_classes),
    )
