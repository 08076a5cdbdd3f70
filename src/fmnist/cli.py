"""The command line: parses flags into configs, calls the library, prints. No logic of its own.

Every FmnistError becomes one line on stderr and exit status 1; bad flags exit 2 (argparse).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

from . import __version__
from .errors import ConfigError, FmnistError


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    from .data import DATASETS, DEFAULT_DATASET

    p.add_argument("--dataset", default=DEFAULT_DATASET, choices=DATASETS.names(),
                   help="which data set (default: %(default)s)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder holding the IDX files (also searched: $FMNIST_DATA/<dataset>, "
                        "~/.cache/fmnist, ~/.keras/datasets, ./data/<TorchvisionName>/raw)")


# ---------------------------------------------------------------- fmnist data ...
def cmd_data_get(args) -> int:
    from .data import ROLES, get_source, locate, verify_file

    source = get_source(args.dataset)
    paths = locate(source, args.data_dir, progress=not args.quiet)
    for role in ROLES:  # downloads were verified; files found on disk are checked here
        verify_file(paths[role], source.files[role], source)
    print(f"{args.dataset}: verified files in {paths['train_images'].parent}")
    return 0


def cmd_data_verify(args) -> int:
    from .data import ROLES, get_source, locate, verify_file

    source = get_source(args.dataset)
    paths = locate(source, args.data_dir, download_missing=False)
    failed: list[str] = []
    for role in ROLES:
        try:
            verify_file(paths[role], source.files[role], source)
            print(f"ok    {paths[role]}")
        except FmnistError as exc:
            print(f"FAIL  {exc}")
            failed.append(str(exc))
    if failed:  # the one stderr line names the bad files, not just how many there were
        raise FmnistError(f"{len(failed)} of {len(ROLES)} {source.title} files failed "
                          f"verification: {'; '.join(failed)}")
    print(f"{source.title}: all {len(ROLES)} files verified")
    return 0


def cmd_data_info(args) -> int:
    import numpy as np

    from .data import get_source, load, pixel_stats

    source = get_source(args.dataset)
    splits = {s: load(source, s, data_dir=args.data_dir) for s in ("train", "test")}
    print(f"{source.title} ({source.homepage})")
    width = max(len(n) for n in source.class_names)
    print(f"  {'class':<{width + 4}} {'train':>7} {'test':>7}")
    counts = {s: np.bincount(sp.labels, minlength=source.num_classes) for s, sp in splits.items()}
    for i, name in enumerate(source.class_names):
        print(f"  {i} {name:<{width + 2}} {counts['train'][i]:>7} {counts['test'][i]:>7}")
    print(f"  {'total':<{width + 4}} {len(splits['train']):>7} {len(splits['test']):>7}")
    for s, sp in splits.items():
        mean, std = pixel_stats(sp.images)
        print(f"  {s}: {sp.images.shape[0]} images of {sp.images.shape[1]}x{sp.images.shape[2]}"
              f" uint8, pixel mean {mean:.4f}, std {std:.4f} (in [0, 1])")
    return 0


def cmd_data_show(args) -> int:
    from .data import load
    from .plots import sample_grid, save_figure

    if args.out.is_dir():  # before any data is loaded or downloaded
        raise ConfigError(f"--out {args.out}: is a folder; give a file name such as samples.png")
    split = load(args.dataset, args.split, data_dir=args.data_dir)
    fig = sample_grid(split.images, split.labels, split.class_names,
                      per_class=args.per_class, seed=args.seed)
    print(f"wrote {save_figure(fig, args.out)}")
    return 0


def _data_parser(sub) -> None:
    data = sub.add_parser("data", help="get, verify, summarise and show the data sets")
    dsub = data.add_subparsers(dest="data_cmd", required=True, metavar="{get,info,verify,show}")
    get = dsub.add_parser("get", help="find the IDX files or download them, then verify")
    get.add_argument("--quiet", action="store_true", help="no progress bar")
    get.set_defaults(func=cmd_data_get)
    info = dsub.add_parser("info", help="counts per split and class, pixel mean and std")
    info.set_defaults(func=cmd_data_info)
    verify = dsub.add_parser("verify", help="check every file against its official checksum")
    verify.set_defaults(func=cmd_data_verify)
    show = dsub.add_parser("show", help="write a PNG grid of samples, one row per class")
    show.add_argument("--out", type=Path, default=Path("samples.png"),
                      help="PNG to write (default: %(default)s)")
    show.add_argument("--split", choices=("train", "test"), default="train")
    show.add_argument("--per-class", type=_positive_int, default=10,
                      help="images per class row (default: %(default)s)")
    show.add_argument("--seed", type=_non_negative_int, default=0, help="which samples (default: 0)")
    show.set_defaults(func=cmd_data_show)
    for p in (get, info, verify, show):
        _add_data_flags(p)


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
        return value
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


# ---------------------------------------------------------------- models, optimizers
def cmd_models(args) -> int:
    from .models import model_table

    rows = model_table()
    width = max(len(r[0]) for r in rows)
    print(f"{'model':<{width}}  {'parameters':>11}  description")
    for name, params, description in rows:
        print(f"{name:<{width}}  {params:>11,}  {description}")
    return 0


def cmd_optimizers(args) -> int:
    from .optim import optimizer_table

    rows = optimizer_table()
    width = max(len(r[0]) for r in rows)
    for name, defaults, description in rows:
        hp = ", ".join(f"{k}={v}" for k, v in defaults.items())
        print(f"{name:<{width}}  {description}\n{'':<{width}}  defaults: {hp}")
    return 0


# ---------------------------------------------------------------- train, evaluate, predict
def _key_values(pairs: list[str] | None, flag: str) -> dict:
    """['dropout=0.1', 'hidden=[256,128]'] -> {'dropout': 0.1, 'hidden': [256, 128]}."""
    out = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r}: write NAME=VALUE, e.g. {flag} dropout=0.1")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text  # a bare word stays a string
    return out


def _given(**fields) -> dict:
    """The fields whose flag was given (argparse leaves the others None)."""
    return {k: v for k, v in fields.items() if v is not None}


def _data_dir(args) -> str | None:
    # absolute: the run's config.json must still find the data from another folder
    return str(args.data_dir.expanduser().resolve()) if args.data_dir else None


def config_from_args(args) -> "RunConfig":
    """Start from the dataclass defaults; every flag given overrides its field."""
    from .config import RunConfig

    given = _given
    return RunConfig().replace(
        data=given(dataset=args.dataset, data_dir=_data_dir(args),
                   val_size=args.val_size, split_seed=args.split_seed,
                   train_limit=args.train_limit, augment=args.augment,
                   crop_pad=args.crop_pad, flip=args.flip, erase=args.erase),
        model=given(name=args.model, kwargs=_key_values(args.model_arg, "--model-arg") or None),
        optim=given(name=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                    kwargs=_key_values(args.opt_arg, "--opt-arg") or None),
        train=given(epochs=args.epochs, batch_size=args.batch_size, schedule=args.schedule,
                    warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing,
                    clip_grad=args.clip_grad, patience=args.patience, seed=args.seed,
                    device=args.device, precision=args.precision, threads=args.threads,
                    tta=args.tta))


def _print_result(run) -> None:
    m = run.metrics
    print(f"test accuracy {100 * m['test_acc']:.2f}%  (loss {m['test_loss']:.4f}, "
          f"{m['weights']} weights, epoch {m['best_epoch'] or m['epochs_run']}, "
          f"{m['train_seconds']:.1f}s of training on {m['device']})")
    print(f"run directory: {run.dir}")


def cmd_train(args) -> int:
    from . import api

    from .config import RunConfig

    log = None if args.quiet else print
    config = config_from_args(args)
    if args.resume is not None:
        if config != RunConfig() or args.out is not None:
            raise ConfigError("--resume continues a run with the settings saved in its "
                              "config.json; drop the other training flags")
        if args.dry_run:
            from .runs import load_config
            print(json.dumps(load_config(args.resume).to_dict(), indent=2))
            return 0
        run = api.resume(args.resume, progress=not args.quiet, log=log, plots=not args.no_plots)
    else:
        _check_known(config)
        if args.dry_run:
            print(json.dumps(config.to_dict(), indent=2))
            return 0
        run = api.train(config, out=args.out, root=args.runs_dir, progress=not args.quiet,
                        log=log, argv=["fmnist", *sys.argv[1:]], plots=not args.no_plots)
    _print_result(run)
    return 0


def _check_known(config) -> None:
    """Fail on unknown names before any data is loaded."""
    from .api import check_buildable

    check_buildable(config)


def cmd_evaluate(args) -> int:
    from .api import open_run

    run = open_run(args.run_dir, args.device)
    m = run.evaluate(args.split)
    print(f"{run.dir}: {args.split} accuracy {100 * m['accuracy']:.2f}%  loss {m['loss']:.4f}  "
          f"macro F1 {m['macro_f1']:.4f}")
    for row in m["per_class"]:
        print(f"  {row['name']:<12} precision {row['precision']:.3f}  recall {row['recall']:.3f}"
              f"  f1 {row['f1']:.3f}")
    return 0


def cmd_predict(args) -> int:
    import numpy as np

    from .api import open_run
    from .data import get_source, load
    from .runs import save_predictions

    run = open_run(args.run_dir, args.device)
    names: list[str] = []  # which file each image came from, for pictures
    if args.images:
        parts = [_read_images(p) for p in args.images]
        names = [p.name for p, part in zip(args.images, parts) for _ in range(len(part))]
        images, labels = np.concatenate(parts), np.full(len(names), -1)
    else:
        part = load(run.config.data.dataset, args.split, data_dir=run.config.data.data_dir)
        images, labels = part.images, part.labels
    probs = run.predict(images)
    what = args.images[0].name if args.images else args.split
    out = Path(args.out) if args.out else run.dir / f"predictions-{what}.csv"
    path = save_predictions(out.parent, labels, probs, name=out.name)
    class_names = get_source(run.config.data.dataset).class_names
    for name, row in list(zip(names, probs))[:20]:  # a glance; the CSV has them all
        print(f"  {name}: {class_names[row.argmax()]} ({100 * row.max():.1f}%)")
    known = labels >= 0
    if known.any():
        acc = float((probs.argmax(1)[known] == labels[known]).mean())
        print(f"accuracy {100 * acc:.2f}% on {int(known.sum())} labelled images")
    print(f"wrote {len(probs)} predictions to {path}")
    return 0


def _read_images(path: Path):
    """(N, 28, 28) uint8: an IDX file of images, or one picture prepared like the data set."""
    import numpy as np

    from .data import read_idx
    from .data.images import IMAGE_SUFFIXES, read_picture

    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_picture(path)[None]
    images = read_idx(path)
    images = images[None] if images.ndim == 2 else images
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ConfigError(f"{path}: holds {images.dtype} {images.shape}; predict wants uint8 "
                          "images of shape (N, 28, 28), or a picture (PNG, JPEG)")
    return images


def _train_parser(sub) -> None:
    from .config import DEVICES, PRECISIONS, SCHEDULES

    p = sub.add_parser("train", help="train a model, evaluate it on the test split, write a run",
                       description="Train on the training split (minus a validation split), "
                       "keep the best weights by validation accuracy, score them on the "
                       "test images, and write everything into a run directory. Flags not "
                       "given keep the defaults shown by --dry-run.")
    _add_data_flags(p)
    g = p.add_argument_group("model and optimizer")
    g.add_argument("--model", help="model name (default: cnn; see `fmnist models`)")
    g.add_argument("--model-arg", action="append", metavar="NAME=VALUE",
                   help="model keyword, repeatable: --model-arg dropout=0.1")
    g.add_argument("--optimizer", help="optimizer name (default: nesterov; see `fmnist optimizers`)")
    g.add_argument("--lr", type=float, help="peak learning rate (default: 0.2 for the default "
                   "nesterov, else the optimizer's own)")
    g.add_argument("--weight-decay", type=float, help="weight decay on conv/linear weights "
                   "(default: 5e-4 for the default nesterov, else the optimizer's own)")
    g.add_argument("--opt-arg", action="append", metavar="NAME=VALUE",
                   help="optimizer hyperparameter, repeatable: --opt-arg beta=0.9")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, help="passes over the training split (default: 15)")
    g.add_argument("--batch-size", type=int, help="images per step (default: 256)")
    g.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule (default: onecycle)")
    g.add_argument("--warmup-epochs", type=float, help="linear warm-up in epochs (default: 2.5)")
    g.add_argument("--label-smoothing", type=float, help="in [0, 1) (default: 0.1)")
    g.add_argument("--clip-grad", type=float, help="max gradient norm (default: no clipping)")
    g.add_argument("--patience", type=int, help="early stopping: epochs without a better "
                   "validation accuracy (default: off)")
    g.add_argument("--seed", type=int, help="seed for weights, order, augmentation (default: 0)")
    g.add_argument("--device", choices=DEVICES, help="default: auto (cuda if available)")
    g.add_argument("--precision", choices=PRECISIONS, help="default: auto (bf16 autocast on GPUs and on CPUs with bf16 instructions, "
                   "else fp32)")
    g.add_argument("--threads", type=int, help="CPU threads (default: 0 = every usable core)")
    g.add_argument("--tta", action="store_true", default=None, help="test-time augmentation: "
                   "score each image and its mirror image, averaged (validation and test)")
    g = p.add_argument_group("data split and augmentation")
    g.add_argument("--val-size", type=int, help="validation images held out of the training "
                   "split (default: 5000; 0 = none, then the last weights are scored)")
    g.add_argument("--split-seed", type=int, help="which images are held out (default: 0)")
    g.add_argument("--train-limit", type=int, metavar="N", help="quick experiments: train on "
                   "a stratified subset of N training images (validation included)")
    g.add_argument("--augment", dest="augment", action="store_true", default=None,
                   help="random crop and flip (default: on for CNNs, off for MLPs)")
    g.add_argument("--no-augment", dest="augment", action="store_false")
    g.add_argument("--crop-pad", type=int, help="random-crop padding in pixels (default: 1)")
    g.add_argument("--no-flip", dest="flip", action="store_false", default=None,
                   help="no horizontal flips when augmenting")
    g.add_argument("--erase", type=float, help="random-erasing probability (default: 0)")
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, help="run directory (default: RUNS_DIR/<time>-<model>)")
    g.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs")
    g.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue a killed run from its last checkpoint (other flags ignored)")
    g.add_argument("--no-plots", action="store_true", help="draw no figures")
    g.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    g.add_argument("--dry-run", action="store_true", help="print the config and exit")
    p.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="re-score a run's weights on a split")
    e.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    e.add_argument("--split", choices=("test", "train"), default="test")
    e.add_argument("--device", choices=DEVICES, default="auto")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="write a run's predictions for a split, IDX files or pictures")
    pr.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    src = pr.add_mutually_exclusive_group()
    src.add_argument("--split", choices=("test", "train"), default="test")
    src.add_argument("--images", type=Path, nargs="+", metavar="FILE",
                     help="IDX files of uint8 28x28 images (.gz or not), or pictures (PNG, "
                          "JPEG, ...): trimmed, resized to 28, centred and inverted to a "
                          "light garment on black, like the data set")
    pr.add_argument("--out", type=Path, help="CSV to write (default: RUN_DIR/predictions-<what>.csv)")
    pr.add_argument("--device", choices=DEVICES, default="auto")
    pr.set_defaults(func=cmd_predict)

    m = sub.add_parser("models", help="list the models with their parameter counts")
    m.set_defaults(func=cmd_models)
    o = sub.add_parser("optimizers", help="list the optimizers with their defaults")
    o.set_defaults(func=cmd_optimizers)


# ---------------------------------------------------------------- compare
def cmd_compare(args) -> int:
    import time

    from .compare import PRESETS, Plan, compare, format_table, parse_optimizers
    from .config import RunConfig

    preset = PRESETS[args.preset] if args.preset else None
    # DeepOBS: plain cross-entropy, constant learning rates, no augmentation
    base = RunConfig().replace(data={"augment": False}, train={
        "schedule": "constant", "warmup_epochs": 0, "label_smoothing": 0.0})
    if preset:
        base = base.replace(**preset.base)
        print(f"preset {args.preset}: {preset.description}")
    given = _given
    base = base.replace(
        data=given(dataset=args.dataset, data_dir=_data_dir(args),
                   val_size=args.val_size, train_limit=args.train_limit),
        model=given(name=args.model),
        train=given(epochs=args.epochs, batch_size=args.batch_size, device=args.device,
                    threads=args.threads))
    if args.optimizers:
        optimizers = parse_optimizers(args.optimizers)
    elif preset:
        optimizers = preset.optimizers
    else:
        raise ConfigError("--optimizers: name the optimizers to compare, e.g. "
                          "--optimizers msgd,adam:1e-3,msvag (or use --preset)")
    if args.lr_grid:  # search every learning rate that was not given explicitly by the user
        given_lrs = dict(parse_optimizers(args.optimizers or ""))
        optimizers = tuple((n, given_lrs.get(n)) for n, _ in optimizers)
    else:  # no grid: an optimizer without a learning rate runs at its default
        from .optim import OPTIMIZERS
        optimizers = tuple((n, lr if lr is not None else OPTIMIZERS.get(n).defaults["lr"])
                           for n, lr in optimizers)
    seeds = args.seeds if args.seeds is not None else (preset.seeds if preset else 3)
    plan = Plan(base, optimizers, tuple(range(seeds)), grid_points=args.grid_points,
                extra={"preset": args.preset, "command": " ".join(["fmnist", *sys.argv[1:]])})
    out = args.out or Path("comparisons") / f"{time.strftime('%Y%m%d-%H%M%S')}-{base.model.name}"
    print(f"comparing {', '.join(n for n, _ in optimizers)} on {base.model.name}, "
          f"{seeds} seed(s), {base.train.epochs} epoch(s) each -> {out}")
    rows = compare(plan, out, log=(lambda _m: None) if args.quiet else print)
    print(format_table(rows))
    if not args.no_plots:
        from .plots_compare import draw_comparison
        for path in draw_comparison(out):
            print(f"wrote {path}")
    return 0


def _compare_parser(sub) -> None:
    from .config import DEVICES

    p = sub.add_parser("compare", help="compare optimizers over several seeds (DeepOBS-style)",
                       description="Train one model with several optimizers and seeds, the "
                       "same data order per seed, constant learning rates and no augmentation; "
                       "score every epoch on a fixed 10k training subset and the validation "
                       "split; print mean ± std over seeds. Runs already done are skipped, so "
                       "the same command continues an interrupted comparison (give --out).")
    _add_data_flags(p)
    p.add_argument("--optimizers", metavar="NAME[:LR],...",
                   help="e.g. msgd,adam:1e-3,msvag:0.3 (no LR: the default, or --lr-grid)")
    p.add_argument("--preset", choices=("dissecting-adam",),
                   help="dissecting-adam: the paper's Fashion-MNIST setting (P1, batch 64, "
                        "~6000 steps, tuned constant rates)")
    p.add_argument("--model", help="model name (default: cnn, or the preset's)")
    p.add_argument("--seeds", type=_positive_int, help="seeds per optimizer (default: 3)")
    p.add_argument("--epochs", type=int, help="epochs per run (default: 15, or the preset's)")
    p.add_argument("--batch-size", type=int, help="default: 256, or the preset's")
    p.add_argument("--lr-grid", action="store_true",
                   help="choose each learning rate not given by a log-spaced grid search "
                        "(first seed, best final validation accuracy)")
    p.add_argument("--grid-points", type=_positive_int, default=5,
                   help="learning rates in the grid, default/10 .. default*10 (default: 5)")
    p.add_argument("--val-size", type=int, help="validation images (default: 5000)")
    p.add_argument("--train-limit", type=int, metavar="N",
                   help="quick look: a stratified subset of N training images")
    p.add_argument("--device", choices=DEVICES)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", type=Path, help="comparison directory (default: comparisons/<time>-<model>)")
    p.add_argument("--no-plots", action="store_true", help="draw no figures")
    p.add_argument("--quiet", action="store_true", help="print only the table")
    p.set_defaults(func=cmd_compare)


# ---------------------------------------------------------------- plot, report
def cmd_plot(args) -> int:
    from .errors import RunError

    directory = args.directory
    if not directory.is_dir():
        raise RunError(f"{directory}: no such run or comparison directory")
    from .report import is_comparison

    if is_comparison(directory):
        from .plots_compare import draw_comparison
        written = draw_comparison(directory)
    else:
        from .data import load
        from .plots import draw_run
        from .runs import load_config

        config = load_config(directory)
        test = load(config.data.dataset, "test", data_dir=config.data.data_dir)
        written = draw_run(directory, test_images=test.images)
    if not written:
        raise RunError(f"{directory}: nothing to draw (no history.jsonl, metrics.json or runs/)")
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_report(args) -> int:
    from .errors import RunError
    from .report import write_report

    if not args.directory.is_dir():
        raise RunError(f"{args.directory}: no such run or comparison directory")
    if args.redraw:
        cmd_plot(args)
    print(f"wrote {write_report(args.directory)}")
    return 0


def _plot_parsers(sub) -> None:
    p = sub.add_parser("plot", help="(re)draw a run's or a comparison's figures from its files")
    p.add_argument("directory", type=Path, metavar="DIR", help="run or comparison directory")
    p.set_defaults(func=cmd_plot)
    r = sub.add_parser("report", help="write DIR/report.html: one self-contained page")
    r.add_argument("directory", type=Path, metavar="DIR", help="run or comparison directory")
    r.add_argument("--redraw", action="store_true", help="redraw the figures first")
    r.set_defaults(func=cmd_report)


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmnist",
        description="Train, compare and explain image classifiers on Fashion-MNIST.")
    parser.add_argument("--version", action="version", version=f"fmnist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _data_parser(sub)
    _train_parser(sub)
    _compare_parser(sub)
    _plot_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FmnistError as exc:
        print(f"fmnist: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fmnist: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
