"""Every figure on small synthetic inputs: it saves a PNG of the promised pixel size."""
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist import metrics as M
from fmnist import plots, runs
from fmnist.errors import FmnistError, RunError, WriteError
from fmnist.plots.style import BLUE, ORANGE, VERMILLION

from conftest import write_member_run

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def images_labels(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10  # (N, 28, 28), (N,)


def softmax_probs(labels, strength=3.0, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(labels), 10))
    logits[np.arange(len(labels)), labels] += strength
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def history(epochs=3, val=True):
    out = []
    for e in range(epochs + 1):
        r = {"epoch": e, "step": 100 * e, "lr": 0.1 * (1 - e / (epochs + 1)), "seconds": 2.0 * e,
             "train_loss": 2.3 / (1 + e), "train_acc": 0.1 + 0.8 * e / (epochs + 1)}
        if val:
            r |= {"val_loss": 2.3 / (1 + 0.8 * e), "val_acc": 0.1 + 0.7 * e / (epochs + 1)}
        out.append(r)
    return out


def assert_drawn(path, colours=()):
    """The PNG shows something: a background plus at least 1% of the pixels in other
    colours, many shades (text, lines, antialiasing), and each of `colours` (hex) somewhere.
    A blank or one-colour figure fails (test_assert_drawn_fails_on_blank_figures)."""
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
    values, counts = np.unique(rgb, axis=0, return_counts=True)
    assert 1 - counts.max() / len(rgb) >= 0.01, f"{path.name}: almost nothing drawn"
    assert len(values) >= 16, f"{path.name}: only {len(values)} colours"
    for hex_ in colours:
        want = np.array([int(hex_[i:i + 2], 16) for i in (1, 3, 5)])
        near = (np.abs(rgb - want).max(axis=1) <= 10).sum()
        assert near >= 20, f"{path.name}: colour {hex_} not drawn"


def saved_size(fig, path, colours=()):
    """Save, check it is a PNG that shows something, return its pixel size (width, height)."""
    plots.save_figure(fig, path)
    assert path.stat().st_size > 1000
    assert_drawn(path, colours)
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = fig.get_size_inches()
        assert im.size == (round(w * plots.DPI), round(h * plots.DPI))
        return im.size


def test_assert_drawn_fails_on_blank_figures(tmp_path):
    from matplotlib.figure import Figure

    blank = Figure(figsize=(4, 3))
    plots.save_figure(blank, tmp_path / "blank.png")
    with pytest.raises(AssertionError, match="almost nothing"):
        assert_drawn(tmp_path / "blank.png")
    flat = Figure(figsize=(4, 3), facecolor=BLUE)  # one colour everywhere
    plots.save_figure(flat, tmp_path / "flat.png")
    with pytest.raises(AssertionError):
        assert_drawn(tmp_path / "flat.png")
    curves = plots.training_curves(history(3, val=False))  # no validation: no orange
    plots.save_figure(curves, tmp_path / "c.png")
    with pytest.raises(AssertionError, match="not drawn"):
        assert_drawn(tmp_path / "c.png", colours=(ORANGE,))


def test_sample_grid(tmp_path):
    x, y = images_labels()
    assert saved_size(plots.sample_grid(x, y, NAMES, per_class=5), tmp_path / "g.png") == (440, 660)
    # a class with fewer samples than per_class leaves blanks, it does not fail
    assert saved_size(plots.sample_grid(x[:12], y[:12], NAMES), tmp_path / "g2.png") == (740, 660)


@pytest.mark.parametrize("records", [
    history(3), history(1), history(0), history(3, val=False),
    [r | {"val_loss": None, "val_acc": None} for r in history(2)],  # val recorded as None
    [{k: v for k, v in r.items() if k != "lr"} for r in history(2)],  # no lr
])
def test_training_curves(tmp_path, records):
    assert saved_size(plots.training_curves(records), tmp_path / "c.png", colours=(BLUE,)) == (800, 900)


def test_training_curves_draw_train_and_validation(tmp_path):
    saved_size(plots.training_curves(history(3)), tmp_path / "c.png", colours=(BLUE, ORANGE))


def test_training_curves_needs_a_record():
    with pytest.raises(ValueError):
        plots.training_curves([])


def test_confusion_figure(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500)
    pred = np.where(rng.random(500) < 0.8, y, rng.integers(0, 10, 500))
    cm = M.confusion_matrix(y, pred, 10)
    assert saved_size(plots.confusion_figure(cm, NAMES), tmp_path / "cm.png") == (850, 800)
    diagonal = plots.confusion_figure(np.diag([5, 0, 3]), ["a", "b", "c"])  # no confusions, an empty row
    assert saved_size(diagonal, tmp_path / "cm2.png") == (850, 800)


def test_per_class_table_figure(tmp_path):
    x, y = images_labels(100)
    s = M.summary(y, softmax_probs(y), NAMES)
    assert saved_size(plots.per_class_table_figure(s["per_class"]), tmp_path / "t.png") == (650, 440)


def test_predictions_panel(tmp_path):
    x, y = images_labels(20)
    probs = softmax_probs(y, strength=0.5)  # some right, some wrong
    panel = plots.predictions_panel(x, probs, y, NAMES, n=5, cols=3)
    assert saved_size(panel, tmp_path / "p.png", colours=(BLUE, VERMILLION)) == (1560, 560)


def test_mistakes_gallery(tmp_path):
    x, y = images_labels(100)
    probs = softmax_probs(y, strength=0.0)  # mostly wrong
    assert saved_size(plots.mistakes_gallery(x, probs, y, NAMES), tmp_path / "m.png", colours=(VERMILLION,)) == (1280, 685)
    two_wrong = np.eye(10)[y]
    two_wrong[:2] = np.roll(two_wrong[:2], 1, axis=1)
    assert saved_size(plots.mistakes_gallery(x, two_wrong, y, NAMES), tmp_path / "m2.png") == (640, 275)
    none = plots.mistakes_gallery(x, np.eye(10)[y], y, NAMES)
    assert saved_size(none, tmp_path / "m3.png") == (600, 200)


def comparison_runs():
    runs = []
    for opt, lr in (("sgd", 0.1), ("adam", 0.001)):
        for seed in range(3):
            h = [r | {"test_acc": r["val_acc"] + 0.01 * seed, "test_loss": r["val_loss"]} for r in history(3)]
            runs.append({"optimizer": opt, "lr": lr, "seed": seed, "history": h,
                         "test_acc": h[-1]["test_acc"], "diverged": False})
    runs.append({"optimizer": "sgd", "lr": 0.1, "seed": 3, "history": history(1)[:1] + [{"epoch": 1, "train_loss": None}],
                 "test_acc": float("nan"), "diverged": True})
    runs.append({"optimizer": "sgd", "lr": 10.0, "seed": 0, "history": history(0), "test_acc": 0.1, "diverged": True})
    return runs


def test_comparison_figures(tmp_path):
    runs = comparison_runs()
    assert saved_size(plots.comparison_curves(runs), tmp_path / "cc.png") == (1440, 470)
    assert saved_size(plots.comparison_curves(runs, metrics=("val_acc", "nope")), tmp_path / "cc2.png") == (960, 470)
    assert saved_size(plots.final_accuracy_bars(runs), tmp_path / "cf.png") == (600, 500)
    assert saved_size(plots.comparison_curves([]), tmp_path / "cc3.png") == (600, 200)


def make_run_dir(d: Path, with_history=True, with_metrics=True, with_predictions=True) -> np.ndarray:
    """A run directory as training leaves it; returns the test images the csv indexes."""
    d.mkdir(parents=True, exist_ok=True)
    x, y = images_labels(7)  # few: the predictions panel (a figure per image) is the slow one
    probs = softmax_probs(y, strength=1.0)
    probs[0] = np.roll(probs[0], 1)  # at least one mistake
    if with_history:
        (d / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history(3)))
    if with_metrics:
        (d / "metrics.json").write_text(json.dumps(M.summary(y, probs, NAMES)))
    if with_predictions:
        rows = ["index,label,pred," + ",".join(f"p{c}" for c in range(10))]
        rows += [f"{i},{y[i]},{probs[i].argmax()}," + ",".join(f"{p:.6f}" for p in probs[i]) for i in range(len(y))]
        (d / "predictions.csv").write_text("\n".join(rows) + "\n")
    return x


def test_draw_run_writes_every_figure(tmp_path):
    x = make_run_dir(tmp_path / "run")
    written = plots.draw_run(tmp_path / "run", test_images=x)
    names = ["curves.png", "confusion.png", "per_class.png", "predictions.png", "mistakes.png"]
    assert [p.name for p in written] == names
    for p in written:
        assert p.parent == tmp_path / "run" and p.stat().st_size > 1000
        assert_drawn(p)
    assert not list((tmp_path / "run").glob(".*tmp"))  # no temp files left behind
    # one process draws the same bytes as two (the image figures in a forked process)
    forked = {p.name: p.read_bytes() for p in written}
    for p in written:
        p.unlink()
    alone = {p.name: p.read_bytes() for p in plots.draw_run(tmp_path / "run", x, workers=1)}
    assert alone == forked


def test_draw_run_skips_what_is_missing(tmp_path):
    x = make_run_dir(tmp_path / "a", with_metrics=False)
    assert [p.name for p in plots.draw_run(tmp_path / "a")] == ["curves.png"]  # no images given
    # class names fall back to numbers without metrics.json
    assert [p.name for p in plots.draw_run(tmp_path / "a", x)] == ["curves.png", "predictions.png", "mistakes.png"]
    make_run_dir(tmp_path / "b", with_history=False, with_predictions=False)
    assert [p.name for p in plots.draw_run(tmp_path / "b", x)] == ["confusion.png", "per_class.png"]
    (tmp_path / "empty").mkdir()
    assert plots.draw_run(tmp_path / "empty", x) == []


def test_draw_run_rejects_images_that_do_not_fit(tmp_path):
    x = make_run_dir(tmp_path / "run", with_history=False, with_metrics=False)
    with pytest.raises(RunError, match="test images"):
        plots.draw_run(tmp_path / "run", test_images=x[:3])


def full_disk(monkeypatch, *names):
    """Writing a figure named in `names` fails as on a full disk (ENOSPC), through the
    real atomic writer; set before draw_run forks, so its drawing process has it too."""
    import errno

    from fmnist import fsutil
    from fmnist.plots import style

    def write(path, data):
        if Path(path).name not in names:
            return fsutil.atomic_write_bytes(path, data)
        with fsutil.atomic_open(path) as f:
            f.write(data[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(style, "atomic_write_bytes", write)


@pytest.mark.parametrize("workers", [2, 1])
def test_draw_run_on_a_full_disk_names_the_figure_and_the_fix(tmp_path, monkeypatch, workers):
    """A write failure in the forked process comes back as the same WriteError as in one
    process (it used to fail to unpickle and kill the pool: BrokenProcessPool)."""
    x = make_run_dir(tmp_path / "run")
    full_disk(monkeypatch, "predictions.png", "mistakes.png")
    with pytest.raises(WriteError, match=r"run/predictions.png: could not be written \(No space "
                                         r"left on device\); free some space and try again$") as e:
        plots.draw_run(tmp_path / "run", test_images=x, workers=workers)
    assert e.value.path == tmp_path / "run" / "predictions.png"
    assert not (tmp_path / "run" / "predictions.png").exists()
    assert not list((tmp_path / "run").glob(".*tmp"))


class Odd(Exception):  # cannot be unpickled: its __init__ wants two arguments
    def __init__(self, a, b):
        super().__init__(f"{a} {b}")


def _broken(*args):  # module-level: the pool pickles the figure function by name
    raise Odd("no", "luck")


def _killed(*args):
    os.kill(os.getpid(), signal.SIGKILL)


def test_any_failure_of_the_drawing_process_is_one_clear_error(tmp_path, monkeypatch):
    from fmnist.plots import run as plots_run

    x = make_run_dir(tmp_path / "run")
    monkeypatch.setattr(plots_run, "mistakes_gallery", _broken)
    with pytest.raises(FmnistError, match=r"mistakes.png: could not be drawn \(Odd: no luck\); "
                                          r"`fmnist plot .*run` draws it again"):
        plots.draw_run(tmp_path / "run", test_images=x)
    monkeypatch.setattr(plots_run, "mistakes_gallery", _killed)
    with pytest.raises(FmnistError, match=r"predictions.png, mistakes.png: the process drawing "
                                          r"them ended abruptly .*free some memory, then `fmnist plot"):
        plots.draw_run(tmp_path / "run", test_images=x)


def _subclasses(cls):
    return {cls}.union(*(_subclasses(c) for c in cls.__subclasses__()))


def test_every_fmnist_error_survives_pickling():
    """Errors cross from worker processes by pickle, extra constructor arguments and all."""
    import inspect
    import pickle

    import fmnist.loop  # noqa: F401  TrainingDiverged(message, epoch, step)

    classes = _subclasses(FmnistError)
    assert {WriteError, fmnist.loop.TrainingDiverged} <= classes
    for cls in classes:
        init = cls.__init__  # Exception's own (a builtin) takes the message alone
        params = list(inspect.signature(init).parameters.values())[2:] if inspect.isfunction(init) else []
        extra = [q for q in params if q.default is q.empty]  # after self and the message
        exc = cls("the thing; the fix", *range(len(extra)))
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is cls and str(back) == str(exc) and back.__dict__ == exc.__dict__


def test_read_history_keeps_last_record_per_epoch_and_ignores_a_torn_last_line(tmp_path):
    p = tmp_path / "history.jsonl"
    p.write_text('{"epoch": 0, "a": 1}\n{"epoch": 1, "a": 2}\n{"epoch": 1, "a": 3}\n{"epoch": 2, "a"')
    assert runs.read_history(p) == [{"epoch": 0, "a": 1}, {"epoch": 1, "a": 3}]
    p.write_text('{"epoch": 0}\nnot json\n{"epoch": 1}\n')
    with pytest.raises(RunError, match="line 2"):
        runs.read_history(p)


def test_draw_comparison(tmp_path):
    (tmp_path / "runs").mkdir()
    assert plots.draw_comparison(tmp_path) == []
    for run in comparison_runs():
        write_member_run(tmp_path, run["optimizer"], run["lr"], run["seed"], run["history"],
                         run["test_acc"], run["diverged"])
    written = plots.draw_comparison(tmp_path)
    assert [p.name for p in written] == ["comparison_curves.png", "comparison_final.png"]
    assert all(p.parent == tmp_path for p in written)
    for p in written:
        assert_drawn(p, colours=(BLUE, VERMILLION))  # the first two settings' colours


def test_figures_use_no_pyplot():
    """pyplot keeps global state (not thread-safe, may want a display): the object API only."""
    files = sorted(Path(plots.__file__).parent.glob("*.py"))
    assert len(files) >= 5
    for path in files:
        text = path.read_text()
        assert "import pyplot" not in text and "matplotlib.pyplot" not in text


def test_curves_of_a_watched_run_are_redrawn_at_most_every_so_often(tmp_path):
    from fmnist.api import _curves_drawer
    _curves_drawer(tmp_path, every_s=3600)(history(2))  # too soon after the start: not drawn
    assert not (tmp_path / "curves.png").exists()
    _curves_drawer(tmp_path, every_s=0)(history(2))
    assert_drawn(tmp_path / "curves.png", colours=(BLUE, ORANGE))
