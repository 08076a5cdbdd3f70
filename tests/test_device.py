"""device.py: threads, and malloc keeping freed memory for reuse."""
from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from fmnist import device

# tensors of 8, 32 and 64 MiB filled and freed four times over, after one of 128 MiB; the
# minor page faults of those twelve. glibc as it comes maps blocks this big afresh each time
# (its dynamic mmap threshold stops at 32 MiB) and unmaps them when freed, so every page
# faults in again; with freed memory kept, later rounds reuse the pages of the first.
FAULTS_OF_REUSE = """
import json, resource, sys, torch
from fmnist.device import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
torch.empty(32 << 20).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    for mib in (8, 32, 64):
        torch.empty(mib << 18).fill_(1.0)
print(json.dumps({"kept": kept, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", FAULTS_OF_REUSE, mode], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_keep_freed_memory_reuses_big_blocks_instead_of_faulting_them_in_again():
    plain, kept = _faults("plain"), _faults("keep")
    assert kept["kept"] is True
    pages = 4 * (8 + 32 + 64) * 256  # 4 KiB pages filled, all rounds
    assert plain["faults"] > 3 * pages // 4  # a fresh mapping each time: faulted in again
    assert kept["faults"] < pages // 2  # measured: a quarter, the first round's


def test_set_threads_keeps_freed_memory(monkeypatch):
    import torch

    calls = []
    monkeypatch.setattr(device, "keep_freed_memory", lambda: calls.append(1) or True)
    threads = torch.get_num_threads()
    try:
        assert device.set_threads(1) == 1
    finally:
        torch.set_num_threads(threads)
    assert calls == [1]


def test_keep_freed_memory_runs_once_a_process():
    first = device.keep_freed_memory()
    assert device.keep_freed_memory() is first  # cached: mallopt is called once
    assert device.keep_freed_memory.cache_info().hits >= 1


def test_cpu_name_reads_the_model_name_and_falls_back_to_platform(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B45\n"
                       "flags\t\t: fpu avx512_bf16\n")
    real_open = open
    monkeypatch.setattr(device, "open", lambda path, *a, **k: real_open(
        cpuinfo if path == "/proc/cpuinfo" else path, *a, **k), raising=False)
    assert device.cpu_name() == "AMD EPYC 9B45"

    def missing(path, *a, **k):  # not Linux: no /proc
        raise FileNotFoundError(path)
    monkeypatch.setattr(device, "open", missing, raising=False)
    assert device.cpu_name() == (platform.processor() or platform.machine())
