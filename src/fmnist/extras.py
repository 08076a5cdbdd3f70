"""Optional dependencies, imported where they are used, or one clear line naming the extra."""
from __future__ import annotations

from importlib import import_module

from .errors import FmnistError


def need(module: str, what: str, extra: str = "explain"):
    """Import `module` of the optional `extra`, or raise an FmnistError naming the install."""
    try:
        return import_module(module)
    except ImportError:
        raise FmnistError(f"{what} needs the {module.split('.')[0]} package of the {extra} "
                          f"extra: pip install -c constraints.txt 'fmnist[{extra}]'") from None
