"""fmnist compare: the DeepOBS-style protocol end to end on a tiny budget."""
from __future__ import annotations

import json

import pytest

from fmnist import runs
from fmnist.cli import main
from fmnist.compare import PRESETS, Cell, lr_grid, make_plan, parse_optimizers
from fmnist.errors import ConfigError

from conftest import cut_short

TINY = ["--model", "logreg", "--epochs", "1", "--train-limit", "1500", "--val-size", "300",
        "--batch-size", "100", "--threads", "1", "--no-plots"]


def test_parse_optimizers():
    assert parse_optimizers("msgd, adam:1e-3,") == (("msgd", None), ("adam", 1e-3))
    with pytest.raises(ConfigError, match="NAME:LR"):
        parse_optimizers("adam:fast")


def test_lr_grid_is_log_spaced_around_the_default():
    assert lr_grid(0.1, 5, 10.0) == [0.01, 0.0316, 0.1, 0.316, 1.0]
    assert lr_grid(0.1, 1, 10.0) == [0.1]


def test_preset_matches_the_paper():
    p = PRESETS["dissecting-adam"]
    assert dict(p.optimizers) == {"msgd": 0.1, "adam": 1e-3, "mssd": 3e-4, "msvag": 0.3}
    assert p.base["model"]["name"] == "p1" and p.base["train"]["batch_size"] == 64
    assert p.base["train"]["steps"] == 6000  # the paper's budget of 6000 steps, exactly
    plan = make_plan(preset="dissecting-adam")
    base = plan.base
    assert (base.data.scaling, base.data.val_size, base.data.augment, base.data.train_limit) == (
        "unit", 0, False, None)  # pixels / 255, all 60,000 training images
    assert (base.train.precision, base.train.eval_every, base.train.schedule, base.train.select,
            base.train.eval_test, base.train.label_smoothing) == ("fp32", 600, "constant", "last", True, 0.0)
    assert plan.seeds == tuple(range(10)) and plan.optimizers == p.optimizers
    assert any("tunes nothing" in n for n in plan.notes())
    tuned = make_plan(preset="dissecting-adam-tuned")
    assert all(lr is None for _, lr in tuned.optimizers)  # every rate searched on validation
    assert tuned.base.data.val_size == 5000 and tuned.base.data.scaling == "standard"


def test_dry_run_prints_the_whole_plan(capsys, tmp_path):
    assert main(["compare", "--preset", "dissecting-adam", "--dry-run", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "tunes nothing" in out
    settings = json.loads(out[out.index("{"):])
    assert settings["base"]["train"]["steps"] == 6000 and settings["base"]["data"]["scaling"] == "unit"
    assert settings["seeds"] == list(range(10)) and not (tmp_path / "c").exists()


@pytest.mark.real_data
def test_compare_end_to_end_and_resume(real_data_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FMNIST_DATA", str(real_data_dir))
    out = tmp_path / "cmp"
    argv = ["compare", *TINY, "--optimizers", "sgd,msvag:0.1,adam", "--lr-grid",
            "--grid-points", "2", "--seeds", "2", "--out", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    for name in ("sgd", "msvag", "adam"):
        assert name in table
    summary = json.loads((out / "summary.json").read_text())
    members = [n for row in summary["rows"] for n in row["runs"]]
    assert len(members) == 6  # 3 optimizers x 2 seeds
    grid = {"adam-lr0.0001-seed0", "adam-lr0.01-seed0", "sgd-lr0.01-seed0", "sgd-lr1-seed0"}
    on_disk = {p.name for p in (out / "runs").iterdir()}
    assert grid <= on_disk and set(members) <= on_disk  # msvag's rate was given: no grid
    assert len(on_disk) == 8  # the grid's run at the chosen rate is also the first seed's
    member = out / "runs" / "msvag-lr0.1-seed1"  # an ordinary run directory
    history = runs.load_history(member)
    assert [r["epoch"] for r in history] == [0, 1]
    assert {"train_acc", "val_acc", "test_acc"} <= set(history[-1])
    assert history[0]["train_acc"] is not None  # scored before training
    assert runs.read_metrics(member)["weights"] == "last"  # DeepOBS: the final weights
    assert not (member / "checkpoint.pt").exists() and (member / "predictions.csv").exists()
    assert [r["optimizer"] for r in summary["rows"]] == ["sgd", "msvag", "adam"]
    assert summary["rows"][0]["lr_chosen_by"].startswith("grid")
    assert all(0 < r["test_acc"] <= 1 for r in summary["rows"])
    # the same command again trains nothing: every run is read back
    before = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.json")}
    assert main(argv) == 0
    assert "done before, skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.json")} == before
    # a member run works with the commands for runs
    assert main(["plot", str(member)]) == 0 and (member / "confusion.png").exists()
    assert main(["report", str(member)]) == 0


@pytest.mark.real_data
def test_diverging_runs_are_recorded(real_data_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FMNIST_DATA", str(real_data_dir))
    out = tmp_path / "cmp"
    assert main(["compare", *TINY, "--model", "mlp", "--optimizers", "sgd:1e12", "--seeds",
                 "1", "--out", str(out)]) == 0
    metrics = runs.read_metrics(out / "runs" / "sgd-lr1e+12-seed0")
    assert metrics["diverged"] and metrics["test_acc"] is None
    assert json.loads((out / "summary.json").read_text())["rows"][0]["diverged"] == 1


def toy_compare(out, *extra):
    return ["compare", "--dataset", "toy", "--val-size", "100", "--model", "logreg",
            "--epochs", "2", "--batch-size", "50", "--threads", "1", "--eval-subset", "200",
            "--out", str(out), *extra]


def test_compare_on_synthetic_data_end_to_end(toy, tmp_path, capsys):
    """The whole protocol without real data: cells, summary, figures, report, resume."""
    out = tmp_path / "cmp"
    assert main(toy_compare(out, "--optimizers", "sgd:0.5,adam:0.01", "--seeds", "2",
                            "--keep-checkpoints")) == 0
    printed = capsys.readouterr().out
    assert "sgd" in printed and "adam" in printed
    for name in ("plan.json", "summary.json", "comparison_curves.png", "comparison_final.png",
                 "report.html"):
        assert (out / name).is_file(), name
    summary = runs.read_summary(out)
    assert [r["seeds"] for r in summary["rows"]] == [2, 2]
    adam = summary["rows"][1]
    assert adam["test_acc"] > 0.5 and adam["lr"] == 0.01  # the toy set is learnable
    member = runs.member_dir(out, "adam-lr0.01-seed1")
    config = runs.load_config(member)  # the DeepOBS protocol, recorded in the member's config
    assert (config.train.schedule, config.train.label_smoothing, config.data.augment,
            config.train.select, config.optim.name, config.train.seed) == (
        "constant", 0.0, False, "last", "adam", 1)
    records = runs.read_members(out)
    assert [r["name"] for r in records] == [n for r in summary["rows"] for n in r["runs"]]
    assert abs(summary["rows"][1]["test_acc"] - sum(r["test_acc"] for r in records[2:]) / 2) < 1e-12
    # with its checkpoints kept, a member evaluates like any run, to the number it recorded
    assert main(["evaluate", str(member)]) == 0
    assert f"{100 * runs.read_metrics(member)['test_acc']:.2f}%" in capsys.readouterr().out


def test_compare_resumes_a_cell_cut_short(toy, tmp_path, capsys):
    flags = ["--optimizers", "adam:0.01", "--seeds", "1", "--no-plots"]
    assert main(toy_compare(tmp_path / "whole", *flags)) == 0
    whole = runs.read_member(runs.member_dir(tmp_path / "whole", "adam-lr0.01-seed0"))

    # the same cell killed after its first epoch: a checkpoint, no metrics.json yet
    cell = Cell("adam", 0.01, 0)
    config = cell.config(make_plan("adam:0.01", seeds=1, overrides=TOY).base)
    cut = cut_short(config, runs.member_dir(tmp_path / "cut", cell.name), "epoch", 1)
    capsys.readouterr()
    assert main(toy_compare(tmp_path / "cut", *flags)) == 0
    assert "done before" not in capsys.readouterr().out  # finished, not skipped
    again = runs.read_member(cut)
    assert again["test_acc"] == whole["test_acc"]
    assert [r["val_loss"] for r in again["history"]] == [r["val_loss"] for r in whole["history"]]


TOY = {"data": {"dataset": "toy", "val_size": 100}, "model": {"name": "logreg"},
       "train": {"epochs": 2, "batch_size": 50, "threads": 1, "eval_subset": 200}}


def test_python_and_cli_make_the_same_plan(toy, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(toy_compare(out, "--optimizers", "sgd,adam:1e-3", "--seeds", "2", "--dry-run")) == 0
    out_text = capsys.readouterr().out
    printed = json.loads(out_text[out_text.index("{"):])  # after the plan's description
    plan = make_plan("sgd,adam:1e-3", seeds=2, overrides=TOY)
    assert printed == json.loads(json.dumps(plan.settings()))
    assert plan.base.train.schedule == "constant" and plan.base.data.augment is False
    assert plan.optimizers == (("sgd", 0.1), ("adam", 1e-3))  # sgd at its default rate
    assert not out.exists()  # a dry run writes nothing


def test_compare_leaves_nothing_when_it_cannot_start(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--optimizers", "sgd", "--model", "nope", "--out", str(out)]) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err and not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", "--optimizers", "sgd", "--data-dir", str(empty), "--out", str(out)]) == 1
    assert not out.exists()


def test_compare_needs_optimizers(capsys):
    assert main(["compare", "--epochs", "1"]) == 1
    assert "--optimizers" in capsys.readouterr().err


def test_a_plan_in_steps_without_validation_like_the_paper(toy, tmp_path, capsys):
    """The preset's shape on toy data: no validation split, a step budget, the test set
    scored every few steps, curves against steps, results ranked by test accuracy."""
    out = tmp_path / "cmp"
    assert main(["compare", "--dataset", "toy", "--val-size", "0", "--model", "logreg",
                 "--optimizers", "sgd:0.5,adam:0.01", "--seeds", "2", "--steps", "24",
                 "--eval-every", "8", "--batch-size", "50", "--threads", "1", "--scaling", "unit",
                 "--precision", "fp32", "--eval-subset", "200", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tunes nothing" in printed and "ranking by mean final test accuracy:" in printed
    member = runs.member_dir(out, "adam-lr0.01-seed0")
    assert [r["step"] for r in runs.load_history(member)] == [0, 8, 16, 24]
    assert all(r["test_acc"] is not None for r in runs.load_history(member))
    summary = runs.read_summary(out)
    assert all(r["final_val_acc"] is None and r["test_acc"] > 0 for r in summary["rows"])
    page = (out / "report.html").read_text()
    assert "by final test accuracy" in page and "tunes nothing" in page
    assert (out / "comparison_curves.png").stat().st_size > 1000
    # a grid search needs a validation split
    assert main(["compare", "--dataset", "toy", "--val-size", "0", "--optimizers", "sgd",
                 "--lr-grid", "--out", str(tmp_path / "g")]) == 1
    assert "validation split" in capsys.readouterr().err


def test_seeds_run_one_after_another(toy, tmp_path, capsys):
    # a long plan stopped part-way leaves whole seeds: every optimizer's seed 0, then seed 1
    assert main(toy_compare(tmp_path / "c", "--optimizers", "sgd:0.5,adam:0.01", "--seeds", "2",
                            "--no-plots", "--epochs", "1")) == 0
    done = [line.split(":")[0].strip() for line in capsys.readouterr().out.splitlines()
            if line.startswith("  ") and "test " in line]
    assert done == ["sgd-lr0.5-seed0", "adam-lr0.01-seed0", "sgd-lr0.5-seed1", "adam-lr0.01-seed1"]


# ------------------------------------------------------------------ refused before anything starts
def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error: "), err
    return err[0]


@pytest.mark.parametrize("argv, needle", [
    (["--ray", "--cpus-per-run", "nan"], "--cpus-per-run nan"),
    (["--ray", "--cpus-per-run", "inf"], "--cpus-per-run inf"),
    (["--ray", "--cpus-per-run", "1e-9"], "0.0001"),  # below Ray's smallest fraction
    (["--ray", "--cpus-per-run", "0"], "--cpus-per-run 0"),
    (["--ray", "--gpus-per-run", "nan"], "--gpus-per-run nan"),
    (["--ray", "--gpus-per-run", "-1"], "--gpus-per-run -1"),
    (["--ray", "--gpus-per-run", "1e-9"], "0.0001"),
    (["--cpus-per-run", "2"], "only with --ray"),  # else silently ignored
    (["--gpus-per-run", "1"], "only with --ray"),
])
def test_ray_resources_are_checked_before_anything_starts(tmp_path, capsys, argv, needle):
    out = tmp_path / "cmp"
    assert main(["compare", "--optimizers", "sgd", *argv, "--out", str(out)]) == 1
    line = one_error_line(capsys)
    assert needle in line, line
    assert not out.exists()  # no plan.json left behind, Ray never started


@pytest.mark.parametrize("optimizers", ["adam:1e-3,adam:1e-2", "adam,adam:1e-3", "sgd,adam,sgd"])
def test_an_optimizer_named_twice_is_refused(tmp_path, capsys, optimizers):
    # one rate per optimizer: `chosen` and the summary's rows are keyed by its name, so the
    # second rate was silently dropped
    with pytest.raises(ConfigError, match="named twice"):
        make_plan(optimizers, seeds=1)
    out = tmp_path / "cmp"
    assert main(["compare", "--optimizers", optimizers, "--dry-run", "--out", str(out)]) == 1
    line = one_error_line(capsys)
    assert "--optimizers" in line and "named twice" in line and "--lr-grid" in line, line


def test_a_run_directory_and_a_comparison_are_never_mixed(toy, tmp_path, capsys):
    from fmnist import api
    from test_train import toy_config

    run = api.train(toy_config(epochs=1), out=tmp_path / "run", plots=True)
    before = {p.name: p.read_bytes() for p in run.dir.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(toy_compare(run.dir, "--optimizers", "sgd", "--seeds", "1")) == 1
    line = one_error_line(capsys)
    assert str(run.dir) in line and "holds a run" in line and "--out" in line, line
    assert {p.name: p.read_bytes() for p in run.dir.iterdir() if p.is_file()} == before
    assert not (run.dir / "runs").exists()  # nothing added, report.html kept

    cmp = tmp_path / "cmp"
    assert main(toy_compare(cmp, "--optimizers", "sgd", "--seeds", "1", "--epochs", "1")) == 0
    inside = sorted(p.name for p in cmp.iterdir())
    capsys.readouterr()
    assert main(["train", "--dataset", "toy", "--val-size", "100", "--model", "logreg", "--epochs",
                 "1", "--no-plots", "--quiet", "--out", str(cmp)]) == 1
    line = one_error_line(capsys)
    assert str(cmp) in line and "comparison" in line and "--out" in line, line
    assert sorted(p.name for p in cmp.iterdir()) == inside


def test_no_lr_grid_overrides_a_presets_grid(capsys):
    # flags given override a --preset's settings: "not given" is not "given off"
    assert all(lr is None for _, lr in make_plan(preset="dissecting-adam-tuned").optimizers)
    plan = make_plan(preset="dissecting-adam-tuned", lr_grid=False)
    assert all(lr is not None for _, lr in plan.optimizers)  # each optimizer's default rate
    assert dict(plan.optimizers)["adam"] == 1e-3
    assert main(["compare", "--preset", "dissecting-adam-tuned", "--no-lr-grid", "--dry-run"]) == 0
    out = capsys.readouterr().out
    settings = json.loads(out[out.index("{"):])
    assert all(lr is not None for _, lr in settings["optimizers"]), settings["optimizers"]
    assert main(["compare", "--preset", "dissecting-adam", "--lr-grid", "--val-size", "5000", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(lr is None for _, lr in json.loads(out[out.index("{"):])["optimizers"])


# ------------------------------------------------------------------ damaged cells
def toy_cells(out, *extra):
    return toy_compare(out, "--optimizers", "sgd:0.5,adam:0.01", "--seeds", "1", "--epochs", "1",
                       "--no-plots", "--quiet", *extra)


@pytest.mark.parametrize("content, needle", [
    ("{}", "diverged"),  # was read as a diverged run and dropped from the ranking
    ('{"diverged": false}', "test_acc"),
    ('{"diverged": false, "test_acc": 0.5, "test_loss": 1.0, "train_seconds": 1}', "final_val_acc"),
    ('{"diverged": "no", "test_acc": 0.5}', "diverged"),
])
def test_a_cells_metrics_without_its_fields_is_named(toy, tmp_path, capsys, content, needle):
    out = tmp_path / "cmp"
    assert main(toy_cells(out)) == 0
    cell = runs.member_dir(out, "adam-lr0.01-seed0")
    (cell / "metrics.json").write_text(content)
    capsys.readouterr()
    assert main(toy_cells(out)) == 1
    line = one_error_line(capsys)
    assert str(cell / "metrics.json") in line and needle in line, line
    assert f"delete {cell}" in line and "restore" not in line, line  # rerunning alone fails again
    assert main(["plot", str(out)]) == 1  # the comparison's figures read the cells: the same line
    assert f"delete {cell}" in one_error_line(capsys)


@pytest.mark.parametrize("name, content", [
    ("config.json", "{"), ("history.jsonl", "x\n{}\n"), ("metrics.json", "[]")])
def test_a_damaged_cell_names_its_folder_as_the_fix(toy, tmp_path, capsys, name, content):
    out = tmp_path / "cmp"
    assert main(toy_cells(out)) == 0
    cell = runs.member_dir(out, "adam-lr0.01-seed0")
    (cell / name).write_text(content)
    capsys.readouterr()
    assert main(toy_cells(out)) == 1
    line = one_error_line(capsys)
    assert str(cell / name) in line and f"delete {cell}" in line, line
    assert "restore it or run again" not in line and "train again" not in line, line
    import shutil
    shutil.rmtree(cell)  # the fix the message gives works
    assert main(toy_cells(out)) == 0


def test_a_damaged_checkpoint_of_a_cell_cut_short_names_its_folder(toy, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(toy_cells(out, "--keep-checkpoints")) == 0
    cell = runs.member_dir(out, "adam-lr0.01-seed0")
    (cell / "metrics.json").unlink()  # cut short: it resumes from its checkpoint
    (cell / "checkpoint.pt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(toy_cells(out, "--keep-checkpoints")) == 1
    line = one_error_line(capsys)
    assert "checkpoint.pt" in line and f"delete {cell}" in line, line


def test_a_file_in_place_of_a_cell_folder_is_named(toy, tmp_path, capsys):
    import shutil

    out = tmp_path / "cmp"
    assert main(toy_cells(out)) == 0
    cell = runs.member_dir(out, "adam-lr0.01-seed0")
    shutil.rmtree(cell)
    cell.write_text("x")
    capsys.readouterr()
    assert main(toy_cells(out)) == 1
    line = one_error_line(capsys)
    assert f"{cell}: is a file" in line and "--out" not in line and "delete it" in line, line
    shutil.rmtree(out / "runs")
    (out / "runs").write_text("x")
    assert main(toy_cells(out)) == 1
    line = one_error_line(capsys)
    assert f"{out / 'runs'}: is a file" in line and "--out" not in line, line


def test_a_damaged_cell_under_jobs_is_not_retried_forever(toy, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(toy_cells(out)) == 0
    cell = runs.member_dir(out, "adam-lr0.01-seed0")
    (cell / "config.json").write_text("{")
    capsys.readouterr()
    assert main(toy_cells(out, "--jobs", "2")) == 1  # workers read the done cells back: no data
    line = one_error_line(capsys)
    assert "1 cell(s) failed: adam-lr0.01-seed0" in line and f"delete {cell}" in line, line
    assert "run the same command again to retry" not in line, line


# ------------------------------------------------------------------ help and dry run
def test_compare_help_names_only_its_own_flags(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "another --optimizer" not in text  # compare has --optimizers, no --optimizer
    assert "--weight-decay" in text and "every optimizer" in text


@pytest.mark.parametrize("argv", [["--opt-arg", "foo=1"], ["--model-arg", "nosuch=3"]])
def test_compare_dry_run_checks_the_cells_like_train(tmp_path, capsys, argv):
    assert main(["train", "--optimizer", "adam", "--model", "mlp", *argv, "--dry-run"]) == 1
    why = one_error_line(capsys)
    out = tmp_path / "c"
    assert main(["compare", "--optimizers", "adam", "--model", "mlp", *argv, "--dry-run",
                 "--out", str(out)]) == 1
    assert one_error_line(capsys) == why  # a plan that would fail is not printed as if it would run
    assert "{" not in capsys.readouterr().out and not out.exists()
    # every optimizer's cell: msgd takes beta, adam does not
    assert main(["compare", "--optimizers", "msgd,adam", "--opt-arg", "beta=0.8", "--dry-run"]) == 1
    assert "optimizer 'adam' takes no beta" in one_error_line(capsys)
