"""progress.py: a bar only where one is drawn, and tqdm imported only then."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_no_bar_takes_every_call_a_bar_gets_without_importing_tqdm():
    code = """
import sys
from fmnist.progress import bar
b = bar(False, total=3, desc="cells", unit="cell", dynamic_ncols=True)
b.update(); b.update(2); b.set_postfix(loss=1.0); b.set_postfix_str("running: a"); b.close()
assert "tqdm" not in sys.modules, "tqdm imported"
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-500:]


def test_a_shown_bar_is_tqdm_and_draws():
    import io

    from tqdm import tqdm

    from fmnist.progress import bar
    out = io.StringIO()
    b = bar(True, total=4, desc="epoch 1/2", file=out)
    b.update(4)
    b.set_postfix_str("running: adam")
    b.close()
    assert isinstance(b, tqdm) and "epoch 1/2" in out.getvalue() and "4/4" in out.getvalue()
