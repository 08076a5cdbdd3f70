"""`fmnist data audit`: can the data be trusted? Exact duplicates, near duplicates across
train and test, likely label errors; written as audit.json (every finding with its image
indices) and audit.png, cached per data-set checksum.

Where the results live: beside the decoded arrays, in `<cache>/audit/<data set>/`
(`~/.cache/fmnist/audit/fashion-mnist/`), keyed by the sha256 of the four files' content
(the registry's checksums: `load` accepts no other bytes under a data set's name) and by the
audit's settings, so a second call with the same settings reads audit.json and loads no
data at all. `--out DIR` also copies both files there. audit.json is written last and
holds audit.png's sha256: the folder is shared by every setting, so an audit of other
settings killed between its PNG and its json leaves its PNG beside an older json; the
checksum catches that, and a mismatch is audited afresh.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import _check, _check_numbers, setting
from ..crossval import PRECISION, CrossValConfig, out_of_sample
from ..errors import FmnistError
from ..extras import need
from ..fsutil import atomic_write_files, atomic_write_json, read_limited
from .dataset import Split, load, normalisation
from .duplicates import exact_groups, nearest_train
from .fetch import cache_dir, check_data_dir
from .sources import DataSource, get_source

FORMAT = 2  # 2: fp32 folds, audit.png's sha256 and the machine recorded
JSON, PNG = "audit.json", "audit.png"
# what _read_cached reads at most: Fashion-MNIST's audit.json is ~0.5 MB and its audit.png
# ~0.3 MB; a cache file far larger is not ours, and is audited afresh rather than read whole
MAX_JSON, MAX_PNG = 64 << 20, 64 << 20
# Near duplicates: L2 distance between a test image and its nearest training image, pixels
# / 255. 0.75 is an RMS difference of 0.027 per pixel (7 grey levels). Why there: MNIST is a
# negative control (its test digits were written by other people than its training digits,
# so it has no true near copies) and none of its 10,000 nearest distances falls below 0.83;
# Fashion-MNIST's closest pairs up to ~0.75 are one photo twice, differing by a uniform tint.
NEAR_THRESHOLD = 0.75


@dataclass(frozen=True)
class AuditConfig:
    near_threshold: float = setting(NEAR_THRESHOLD, "near duplicates: the largest L2 distance (pixels "
                                    "/ 255) between a test image and its nearest training image")
    gallery: int = setting(16, "images per gallery row of audit.png")
    cv: CrossValConfig = setting(help="cross-validation settings", factory=CrossValConfig, cli=False)

    def __post_init__(self) -> None:
        _check_numbers(self)
        _check(0 <= self.near_threshold <= 28, "near_threshold", self.near_threshold, "must be in 0..28")
        _check(1 <= self.gallery <= 64, "gallery", self.gallery, "must be in 1..64")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Audit:
    """What an audit found (`report`, audit.json's content) and where its files are."""

    report: dict
    folder: Path
    cached: bool
    seconds: float  # of this call (a cached one reads a file)

    @property
    def files(self) -> list[Path]:
        return [self.folder / JSON, self.folder / PNG]


def audit_key(source: DataSource, cfg: AuditConfig) -> str:
    """The data's checksum (the four files' content sha256) and the settings, hashed; with
    the folds' precision, which moves the counts (an audit of another precision is another)."""
    what = {"format": FORMAT, "files": {r: f.sha256 for r, f in sorted(source.files.items())},
            "settings": cfg.to_dict(), "precision": PRECISION}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def audit_dir(source: DataSource) -> Path:
    return cache_dir() / "audit" / source.name


def run_audit(name: str | DataSource, data_dir: str | os.PathLike | None = None,
              cfg: AuditConfig | None = None, out: str | os.PathLike | None = None,
              redo: bool = False, threads: int = 0, log: Callable[[str], None] | None = None) -> Audit:
    """Audit a data set (or read the cached audit of the same data and settings, without
    loading the data or torch); `threads`: torch's CPU threads when auditing (0: all)."""
    t0 = time.perf_counter()
    cfg, source = cfg or AuditConfig(), get_source(name)
    check_data_dir(data_dir)  # checked even where the cached audit makes the data unneeded
    folder, key = audit_dir(source), audit_key(source, cfg)
    report = None if redo else _read_cached(folder, key)
    cached = report is not None
    if report is None:
        # a missing extra stops here, before a minute of loading, scanning and training
        need("cleanlab.filter", "fmnist data audit")
        from ..device import set_threads

        set_threads(threads)
        train = load(source, "train", data_dir=data_dir)
        test = load(source, "test", data_dir=data_dir)
        report, figure = _audit(source, train, test, cfg, key, log or (lambda _m: None))
        from ..plots.style import save_figure
        png = save_figure(figure, folder / PNG).read_bytes()
        report["png_sha256"] = hashlib.sha256(png).hexdigest()
        atomic_write_json(folder / JSON, report)  # last: it vouches for audit.png by its sha256
    result = Audit(report, folder, cached, time.perf_counter() - t0)
    if out is not None:  # both copies or neither: never a new json beside an old png
        atomic_write_files({Path(out) / path.name: path.read_bytes() for path in result.files})
        result.folder = Path(out)
    return result


def _read_cached(folder: Path, key: str) -> dict | None:
    """audit.json when it is of this key and well formed and audit.png is the one it was
    written with, else None (audit afresh)."""
    try:
        report = json.loads(read_limited(folder / JSON, MAX_JSON, "audit.json").decode("utf-8"))
        if not (isinstance(report, dict) and report.get("key") == key and _well_formed(report)):
            return None
        png = read_limited(folder / PNG, MAX_PNG, "audit.png")
    except (FmnistError, ValueError, RecursionError):
        return None  # none yet, damaged, or not a file we could have written: audit afresh
    # another audit's PNG (of other settings, killed before its json) is not this one's
    return report if hashlib.sha256(png).hexdigest() == report["png_sha256"] else None


def _well_formed(report: dict) -> bool:
    """What the table and the callers read is there with its type: an audit.json edited by
    hand (or by another version) is audited afresh, not a traceback."""
    try:
        groups = [g for kind in ("train", "test", "shared") for g in report["exact"][kind]]
        return (all(isinstance(g["train"], list) and isinstance(g["test"], list) and
                    isinstance(g["labels_agree"], bool) for g in groups)
                and all(isinstance(i, int) for g in groups for i in g["test"])
                and all(isinstance(p["labels_agree"], bool) and isinstance(p["test"], int)
                        and isinstance(p["train"], int) for p in report["near"]["pairs"])
                and isinstance(report["near"]["threshold"], (int, float))
                and all(isinstance(report["labels"][k], list) for k in ("train", "test"))
                and all(isinstance(report["labels"][k], (int, float)) for k in ("cv_accuracy", "test_accuracy"))
                and all(isinstance(report["sizes"][k], int) for k in ("train", "test"))
                and isinstance(report["title"], str) and isinstance(report["settings"]["cv"]["model"], str)
                and isinstance(report["png_sha256"], str))
    except (KeyError, TypeError):
        return False


def _audit(source: DataSource, train: Split, test: Split, cfg: AuditConfig, key: str,
           log: Callable[[str], None]):
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    exact = exact_groups(train.images, train.labels, test.images, test.labels)
    seconds["exact"] = time.perf_counter() - t

    t = time.perf_counter()
    log(f"near duplicates: the nearest of the {len(train):,} training images to each of the "
        f"{len(test):,} test images ...")
    nearest, dist = nearest_train(test.images, train.images)
    near = np.flatnonzero(dist <= cfg.near_threshold)
    near = near[np.argsort(dist[near], kind="stable")]
    seconds["near"] = time.perf_counter() - t

    t = time.perf_counter()
    machine = _machine(cfg.cv)
    log(f"label errors: {cfg.cv.folds}-fold cross-validation of {cfg.cv.model}, "
        f"{cfg.cv.epochs} epochs per fold ...")
    mean, std = normalisation(source, train.images)
    probs, test_probs = out_of_sample(train.images, train.labels, train.class_names, mean, std,
                                      cfg.cv, extra=test.images, log=log)
    issues = {"train": _label_issues(train.labels, probs), "test": _label_issues(test.labels, test_probs)}
    seconds["labels"] = time.perf_counter() - t

    report = {
        "format": FORMAT, "key": key, "dataset": source.name, "title": source.title,
        "class_names": list(train.class_names), "sizes": {"train": len(train), "test": len(test)},
        "settings": cfg.to_dict(),
        "exact": {kind: [g.to_dict() for g in groups] for kind, groups in exact.items()},
        "near": {
            "method": "exact L2 nearest neighbour of each test image among all training images, "
                      "on the raw pixels / 255 (chunked matrix products in torch)",
            "threshold": cfg.near_threshold,
            "pairs": [{"test": int(i), "train": int(nearest[i]), "distance": round(float(dist[i]), 4),
                       "test_label": int(test.labels[i]), "train_label": int(train.labels[nearest[i]]),
                       "labels_agree": bool(test.labels[i] == train.labels[nearest[i]])} for i in near],
            "quantiles": {str(q): round(float(np.quantile(dist, q)), 4) for q in (0, 0.001, 0.01, 0.5)},
        },
        "labels": {
            "method": f"out-of-sample probabilities ({cfg.cv.folds}-fold cross-validation of "
                      f"{cfg.cv.model} for the training images; a model trained on all of them "
                      "for the test images), then cleanlab.filter.find_label_issues, ranked by "
                      "self-confidence (lowest probability of the given label first)",
            "cv_accuracy": round(float((probs.argmax(1) == train.labels).mean()), 4),
            "test_accuracy": round(float((test_probs.argmax(1) == test.labels).mean()), 4),
            **issues,
        },
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "machine": machine,
        "versions": _versions(),
    }
    from ..plots.audit import audit_figure
    return report, audit_figure(report, train.images, test.images, nearest, dist)


def _machine(cv: CrossValConfig) -> dict:
    """Where the folds trained, as finish() records it for a run: the counts are pinned to
    fp32, but a GPU's kernels and the thread count may still move a borderline suspect."""
    import torch

    from ..device import resolve_device, resolve_precision

    train = cv.run_config().train
    device = resolve_device(train.device)
    return {"device": str(device), "precision": resolve_precision(train.precision, device),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def _label_issues(labels: np.ndarray, probs: np.ndarray) -> list[dict]:
    """Confident learning's suspects, most suspicious first, each with the given label, the
    model's suggestion and both probabilities."""
    find_label_issues = need("cleanlab.filter", "fmnist data audit").find_label_issues

    # n_jobs=1: the per-class work is milliseconds; worker processes would cost more
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    return [{"index": int(i), "given": int(labels[i]), "suggested": int(probs[i].argmax()),
             "confidence": round(float(probs[i].max()), 4),
             "self_confidence": round(float(probs[i, labels[i]]), 4)} for i in ranked]


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "cleanlab", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def summary_table(report: dict) -> str:
    """The table `fmnist data audit` prints."""
    ex, near, lab = report["exact"], report["near"], report["labels"]

    def images(groups: list[dict]) -> int:
        return sum(len(g["train"]) + len(g["test"]) for g in groups)

    def disagree(groups: list[dict]) -> int:
        return sum(not g["labels_agree"] for g in groups)

    # the near row leaves out the exact copies (distance 0), which the row above counts, and
    # counts images, not pairs: one training image may be the nearest of several test images
    copies = {i for g in ex["shared"] for i in g["test"]}
    nearby = [p for p in near["pairs"] if p["test"] not in copies]

    rows = [("exact duplicates within train", len(ex["train"]), images(ex["train"]), disagree(ex["train"])),
            ("exact duplicates within test", len(ex["test"]), images(ex["test"]), disagree(ex["test"])),
            ("exact copies shared by train and test", len(ex["shared"]), images(ex["shared"]), disagree(ex["shared"])),
            (f"near duplicates test~train (0 < L2 <= {near['threshold']:g})", len(nearby),
             len(nearby) + len({p["train"] for p in nearby}), sum(not p["labels_agree"] for p in nearby)),
            ("likely label errors in train (confident learning)", "-", len(lab["train"]), "-"),
            ("likely label errors in test", "-", len(lab["test"]), "-")]
    sizes = report["sizes"]
    lines = [f"{report['title']} audit: {sizes['train']:,} training and {sizes['test']:,} test images",
             f"  {'finding':<52} {'groups':>7} {'images':>7} {'labels differ':>14}"]
    lines += [f"  {a:<52} {b!s:>7} {c!s:>7} {d!s:>14}" for a, b, c, d in rows]
    lines.append(f"  out-of-sample accuracy of the {report['settings']['cv']['model']}: "
                 f"{100 * lab['cv_accuracy']:.2f}% (train, cross-validated), "
                 f"{100 * lab['test_accuracy']:.2f}% (test)")
    return "\n".join(lines)


def check_out(out: str | os.PathLike | None) -> None:
    """Refuse an --out that is a file, before any work."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise FmnistError(f"--out {out}: is a file; give a folder for audit.json and audit.png")
