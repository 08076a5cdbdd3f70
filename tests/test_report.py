"""report.html: one self-contained page with every section, no external reference."""
import base64
import json
import re

import numpy as np
import pytest

from fmnist import metrics as M
from fmnist import runs
from fmnist.metrics import summarise_runs
from fmnist.errors import RunError
from fmnist.report import write_report

from conftest import write_member_run

NAMES = [f"class <{i}>" for i in range(10)]  # markup in names must come out escaped
RUN_IDS = ["settings", "curves", "per-class", "confusion", "predictions", "mistakes"]


def tiny_png() -> bytes:
    """A real 1x1 PNG, so the test needs no figure drawing (that is test_plots' job)."""
    return base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def assert_self_contained(page: str) -> None:
    for bad in ("http://", "https://", 'src="//', "src='//", "url(", "@import"):
        assert bad not in page, bad
    for src in re.findall(r'src="([^"]*)"', page):
        assert src.startswith("data:image/png;base64,")


def make_run(d, figures=("curves", "confusion", "predictions", "mistakes")):
    d.mkdir()
    y = np.arange(50) % 10
    probs = np.full((50, 10), 0.02)
    probs[np.arange(50), (y + (np.arange(50) % 7 == 0)) % 10] = 0.82
    (d / "metrics.json").write_text(json.dumps(M.summary(y, probs, NAMES) | {"weights": "best", "best_epoch": 3}))
    config = {"model": {"name": "2c2d", "width": 32}, "optim": {"name": "adam", "lr": 1e-3},
              "train": {"epochs": 3, "note": "<script>alert(1)</script>"}, "argv": ["fmnist", "train"]}
    (d / "config.json").write_text(json.dumps(config))
    for name in figures:
        (d / f"{name}.png").write_bytes(tiny_png())


def test_run_report_has_every_section_and_embeds_images(tmp_path):
    make_run(tmp_path / "run")
    path = write_report(tmp_path / "run")
    assert path == tmp_path / "run" / "report.html"
    page = path.read_text(encoding="utf-8")
    for id_ in RUN_IDS:
        assert f'id="{id_}"' in page
    assert page.count("data:image/png;base64,") == 4
    assert_self_contained(page)
    assert "Test accuracy <b>" in page and "weights of epoch 3" in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # text escaped
    assert "class &lt;6&gt;" in page and "macro average" in page
    assert "model.width" in page and "2c2d" in page  # nested settings flattened


def test_run_report_notes_missing_parts(tmp_path):
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text('{"model": {"name": "mlp"}}')
    page = write_report(tmp_path / "bare").read_text(encoding="utf-8")
    for id_ in RUN_IDS:
        assert f'id="{id_}"' in page
    assert "data:image" not in page
    assert "curves.png is missing" in page and "not been evaluated" in page
    assert_self_contained(page)


def test_report_refuses_a_folder_that_is_no_run(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="neither a run"):
        write_report(tmp_path / "empty")
    assert not (tmp_path / "empty" / "report.html").exists()


def test_report_rewrites_atomically(tmp_path):
    make_run(tmp_path / "run", figures=())
    write_report(tmp_path / "run")
    (tmp_path / "run" / "curves.png").write_bytes(tiny_png())
    page = write_report(tmp_path / "run").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")) == []


def test_missing_directory_is_a_run_error(tmp_path):
    with pytest.raises(RunError):
        write_report(tmp_path / "nope")


def comparison(d, with_summary=True):
    """Four member runs: sgd 0.88, 0.90; adam 0.91 and one diverged."""
    for k, (opt, lr, acc, div) in enumerate([("sgd", 0.1, 0.88, False), ("sgd", 0.1, 0.90, False),
                                             ("adam", 0.001, 0.91, False), ("adam", 0.001, float("nan"), True)]):
        history = [{"epoch": 0, "val_acc": 0.1, "seconds": 0.0}, {"epoch": 1, "val_acc": acc - 0.01, "seconds": 3.0}]
        write_member_run(d, opt, lr, k, history, None if div else acc, div, seconds=10.0 + k)
    runs.save_plan(d, {"optimizers": [["sgd", 0.1], ["adam", None]], "seeds": [0, 1],
                       "base": {"model": {"name": "mlp"}}})
    if with_summary:  # as `fmnist compare` writes it: the statistics computed once
        rows = summarise_runs(runs.read_members(d))
        chosen = {"sgd": "fixed", "adam": "grid search"}
        runs.save_summary(d, {"rows": [{**r, "lr_chosen_by": chosen[r["optimizer"]]} for r in rows]})


def test_comparison_report(tmp_path):
    comparison(tmp_path / "cmp")
    (tmp_path / "cmp" / "comparison_curves.png").write_bytes(tiny_png())
    page = write_report(tmp_path / "cmp").read_text(encoding="utf-8")
    for id_ in ("settings", "summary", "comparison-curves", "comparison-final"):
        assert f'id="{id_}"' in page
    assert page.count("data:image/png;base64,") == 1
    assert "comparison_final.png is missing" in page
    assert "89.00 \u00b1 1.41%" in page  # sgd: mean and sample std of 0.88, 0.90
    assert "91.00 \u00b1 0.00%" in page and "1/2" in page  # adam: one seed diverged
    assert "best by validation accuracy: <b>adam (lr=0.001)</b>" in page and "grid search" in page
    assert "base.model.name" in page and "10.5" in page  # settings from plan.json; seconds per run
    assert_self_contained(page)


def test_comparison_report_of_an_interrupted_comparison(tmp_path):
    """No summary.json yet: the same statistics, computed from the finished member runs."""
    comparison(tmp_path / "cmp", with_summary=False)
    page = write_report(tmp_path / "cmp").read_text(encoding="utf-8")
    assert "89.00 \u00b1 1.41%" in page and "91.00 \u00b1 0.00%" in page and "1/2" in page


def test_report_of_a_member_run(tmp_path):
    """A comparison's member is an ordinary run directory: it gets a run report."""
    comparison(tmp_path / "cmp")
    member = runs.member_dir(tmp_path / "cmp", "sgd-lr0.1-seed0")
    page = write_report(member).read_text(encoding="utf-8")
    assert "Run sgd-lr0.1-seed0" in page and "optim.name" in page and "resolved.class_names" in page


def test_comparison_report_without_runs(tmp_path):
    (tmp_path / "cmp" / "runs").mkdir(parents=True)
    runs.save_plan(tmp_path / "cmp", {"seeds": [0]})
    page = write_report(tmp_path / "cmp").read_text(encoding="utf-8")
    assert 'id="summary"' in page and "No finished member runs" in page
