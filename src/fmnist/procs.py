"""Child processes that end with their parent: compare's cell workers, the figure drawer.

A parent killed with SIGKILL (or by the OOM killer) runs no clean-up, so its children would
be adopted by init and go on: cells training into a folder a rerun is writing too, a drawer
writing a PNG into a run nobody waits for. Linux can send a child a signal when its parent
dies (prctl PR_SET_PDEATHSIG); elsewhere this does nothing.
"""
from __future__ import annotations

import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Call first thing in a child; `parent`: the pid of the process that started it."""
    if sys.platform != "linux":
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # no prctl in this libc: nothing to ask for
        return
    if os.getppid() != parent:  # the parent died before the request: go now
        os._exit(1)
