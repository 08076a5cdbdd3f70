"""Command-line flags derived from the config dataclasses (config.py).

Each field becomes one flag: its name (or metadata["flag"]), its help text and choices from
the field's metadata, its type from the annotation, its default shown from the config the
command starts from. A flag not given stays None here, so only what the user typed
overrides the config: `overrides(args)` returns RunConfig.replace's parts.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
from pathlib import Path
from typing import Any, Callable

from .config import PARTS, RunConfig, flag_of
from .errors import ConfigError

TITLES = {"data": "data split and augmentation", "model": "model", "optim": "optimizer",
          "train": "training"}
_PREFIX = "cfg:"  # argparse dest of a config field: "cfg:train.epochs"


def _number(kind: Callable[[str], Any], optional: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if optional and text.lower() == "none":
            return _NONE
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}"
                                             + (" (or none)" if optional else "")) from None
    return parse


_NONE = object()  # "--clip-grad none": set the field to None, unlike a flag not given


def _shown(value: Any) -> str:
    return "none" if value is None else ("on" if value is True else "off" if value is False else str(value))


def add_fields(group, cls: type, defaults: Any, prefix: str, skip: frozenset[str] = frozenset(),
               helps: dict[str, str] | None = None) -> None:
    """One flag per field of the dataclass `cls` not in `skip`; dest `prefix` + field name;
    `helps`: help texts that replace the fields' own, by dest (a command where a field's
    text would name a flag it does not have)."""
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if key in skip or f.metadata.get("cli") is False:
            continue
        flag = flag_of(f)
        default = getattr(defaults, f.name)
        text = (helps or {}).get(key, f.metadata.get("help", ""))
        if "(default:" not in text and not isinstance(default, dict):
            text += f" (default: {_shown(default)})"
        kinds = [t.strip() for t in str(f.type).split("|")]
        kw: dict[str, Any] = {"dest": _PREFIX + key, "default": None, "help": text}
        if "dict" in kinds:
            kw.update(action="append", metavar="NAME=VALUE")
        elif "bool" in kinds:
            kw.update(action=argparse.BooleanOptionalAction)
        elif f.metadata.get("choices"):
            kw.update(choices=f.metadata["choices"])
        elif "int" in kinds or "float" in kinds:
            kw.update(type=_number(int if "int" in kinds else float, "None" in kinds))
        elif f.name == "data_dir":  # absolute: config.json must find the data from anywhere
            kw.update(type=lambda s: str(Path(s).expanduser().resolve()))
        if "nargs" in f.metadata:  # --ray [ADDRESS]: the flag alone means `const`
            kw.update(nargs=f.metadata["nargs"], const=f.metadata.get("const"))
        if "action" not in kw and "choices" not in kw:
            kw["metavar"] = f.metadata.get("metavar") or f.name.upper()
        group.add_argument(flag, **kw)


def add_config_flags(parser: argparse.ArgumentParser, defaults: RunConfig,
                     skip: frozenset[str] = frozenset(), helps: dict[str, str] | None = None) -> None:
    """One flag per RunConfig field not in `skip` ("train.seed", ...), grouped by part;
    `helps` replaces fields' help texts ("optim.weight_decay": ...)."""
    for part, cls in PARTS.items():
        add_fields(parser.add_argument_group(TITLES[part]), cls, getattr(defaults, part), f"{part}.",
                   skip, helps)


def given(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """field -> value of the flags given whose dest starts with `prefix`."""
    out = {}
    for dest, value in vars(args).items():
        if dest.startswith(_PREFIX + prefix) and value is not None:
            out[dest[len(_PREFIX + prefix):]] = None if value is _NONE else value
    return out


def overrides(args: argparse.Namespace) -> dict[str, dict]:
    """The config fields whose flag was given, as RunConfig.replace(**parts) takes them."""
    parts: dict[str, dict] = {}
    for part in PARTS:
        for name, value in given(args, f"{part}.").items():
            if isinstance(value, list):  # --model-arg / --opt-arg, repeatable
                value = key_values(value, "--" + ("model-arg" if part == "model" else "opt-arg"))
            parts.setdefault(part, {})[name] = value
    return parts


def key_values(pairs: list[str], flag: str) -> dict:
    """['dropout=0.1', 'hidden=[256,128]'] -> {'dropout': 0.1, 'hidden': [256, 128]}."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r}: write NAME=VALUE, e.g. {flag} dropout=0.1")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            out[key] = text  # a bare word stays a string
    return out


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in low..high (else exit 2 with the reason)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} must be >= {low}" if high is None else
                                             f"{value} must be in {low}..{high}")
        return value
    return parse
