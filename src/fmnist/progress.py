"""Progress bars: tqdm where one is drawn, and a silent stand-in where none is (so that
`--quiet` runs, and the tests, never import tqdm)."""
from __future__ import annotations


class NoBar:
    """A progress bar that shows nothing."""

    def update(self, *_a) -> None: ...
    def set_postfix(self, **_kw) -> None: ...
    def set_postfix_str(self, *_a) -> None: ...
    def close(self) -> None: ...


def bar(progress: bool, **kw):
    """A tqdm bar with tqdm's keywords `kw`, or a NoBar when `progress` is off."""
    if not progress:
        return NoBar()
    from tqdm import tqdm
    return tqdm(**kw)
