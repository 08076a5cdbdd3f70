"""Comparisons spread over processes and over a Ray cluster: the same numbers, resumable,
a dead worker named while the others finish."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from fmnist import runs
from fmnist.cli import main

pytestmark = pytest.mark.real_data  # workers are fresh processes: they load a registered data set

TINY = ["--model", "logreg", "--epochs", "1", "--train-limit", "1500", "--val-size", "300",
        "--batch-size", "100", "--threads", "1", "--eval-subset", "500", "--no-plots", "--quiet",
        "--optimizers", "sgd,adam:1e-3", "--seeds", "2"]


def numbers(out) -> list:
    """summary.json's rows without the timings."""
    rows = json.loads((out / "summary.json").read_text())["rows"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.fixture
def data(real_data_dir, monkeypatch):
    monkeypatch.setenv("FMNIST_DATA", str(real_data_dir))


def test_jobs_2_gives_the_numbers_of_jobs_1(data, tmp_path):
    assert main(["compare", *TINY, "--out", str(tmp_path / "one")]) == 0
    assert main(["compare", *TINY, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    assert numbers(tmp_path / "one") == numbers(tmp_path / "two")
    for name in ("sgd-lr0.1-seed1", "adam-lr0.001-seed0"):  # member by member, epoch by epoch
        a = runs.load_history(runs.member_dir(tmp_path / "one", name))
        b = runs.load_history(runs.member_dir(tmp_path / "two", name))
        assert [{k: v for k, v in r.items() if k != "seconds"} for r in a] == \
               [{k: v for k, v in r.items() if k != "seconds"} for r in b]


def test_a_dead_worker_is_named_and_the_rest_finish(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cmp"
    monkeypatch.setenv("FMNIST_TEST_KILL_CELL", "adam-lr0.001-seed1")
    assert main(["compare", *TINY, "--jobs", "2", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 cell(s) failed: adam-lr0.001-seed1: its worker died" in err[0]
    done = {p.name for p in out.glob("runs/*") if (p / "metrics.json").exists()}
    assert done == {"sgd-lr0.1-seed0", "sgd-lr0.1-seed1", "adam-lr0.001-seed0"}
    monkeypatch.delenv("FMNIST_TEST_KILL_CELL")
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.json")}
    assert main(["compare", *TINY, "--jobs", "2", "--out", str(out)]) == 0  # only the missing cell
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert (out / "runs" / "adam-lr0.001-seed1" / "metrics.json").exists()


def test_a_ray_local_cluster_gives_the_same_numbers(data, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is the optional extra fmnist[ray]")
    assert main(["compare", *TINY, "--out", str(tmp_path / "one")]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert main(["compare", *TINY, "--ray", "--out", str(tmp_path / "ray")]) == 0
    finally:
        ray.shutdown()
    assert numbers(tmp_path / "one") == numbers(tmp_path / "ray")
    member = runs.member_dir(tmp_path / "ray", "adam-lr0.001-seed1")  # an ordinary run directory
    assert {"config.json", "history.jsonl", "metrics.json", "predictions.csv"} <= {p.name for p in member.iterdir()}


def test_execution_flags_are_checked(capsys):
    assert main(["compare", "--optimizers", "sgd", "--jobs", "0", "--dry-run"]) == 1
    assert "jobs=0" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform != "linux", reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_a_child_ends_with_its_killed_parent(tmp_path):
    # compare's cell workers and the figure drawer: a SIGKILLed parent leaves no orphan
    code = ("import os, sys, time\n"
            "from fmnist.procs import die_with_parent\n"
            "parent = os.getpid()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    die_with_parent(parent)\n"
            "    time.sleep(60)\n"
            "    os._exit(0)\n"
            "print(pid, flush=True)\n"
            "time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    child = int(proc.stdout.readline())
    time.sleep(0.5)  # the child has asked by now
    proc.kill()
    proc.wait()
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as f:  # a zombie of init's is gone for our purpose
            if f.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        pytest.fail("the child outlived its killed parent")
