"""The command line: flags derived from the configs (flags.py), each command a few lines
that call the library and print. Every FmnistError becomes one line on stderr and exit
status 1; bad flags exit 2 (argparse). Modules are imported inside the commands, so
`fmnist --help` does not wait for torch.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from . import __version__
from .errors import ConfigError, FmnistError

READER_DATA_DIR = "the data set's folder (default: the run's, where it exists, else the usual places)"


# ---------------------------------------------------------------- fmnist data ...
def cmd_data(args) -> None:
    from . import data

    if args.data_cmd == "get":
        folder = data.get_verified(args.dataset, args.data_dir, progress=not args.quiet)
        print(f"{args.dataset}: verified files in {folder}")
    elif args.data_cmd == "verify":
        lines, failure = data.verification(args.dataset, args.data_dir)
        print(lines)
        if failure:
            raise FmnistError(failure)
    elif args.data_cmd == "info":
        print(data.describe(args.dataset, args.data_dir))
    else:
        from .plots import draw_samples  # matplotlib: only the command that draws imports it

        path = draw_samples(args.dataset, args.split, args.out, args.data_dir, args.per_class, args.seed)
        print(f"wrote {path}")


def cmd_audit(args) -> None:
    from .crossval import CrossValConfig
    from .data.audit import AuditConfig, check_out, run_audit, summary_table
    from .flags import given

    check_out(args.out)
    cfg = AuditConfig(**given(args, "audit."), cv=CrossValConfig(**given(args, "cv.")))
    result = run_audit(args.dataset, args.data_dir, cfg, args.out, args.redo, args.threads,
                       log=None if args.quiet else print)
    print(summary_table(result.report))
    how = "read from the cache" if result.cached else "audited"
    print(f"{how} in {result.seconds:.1f}s: " + ", ".join(str(p) for p in result.files))


def _audit_parser(dsub) -> argparse.ArgumentParser:
    from .crossval import CrossValConfig
    from .data.audit import AuditConfig
    from .flags import add_fields, int_at_least

    a = _command(dsub, "audit", cmd_audit, "find duplicates, train/test overlap and likely label errors",
                 description="Audit a data set: exact duplicates (hash of the pixels) within and "
                 "across the splits, near duplicates across train and test (exact L2 nearest "
                 "neighbour on the pixels), likely label errors (k-fold cross-validation, then "
                 "confident learning with cleanlab). Writes audit.json and audit.png, cached per "
                 "data-set checksum and settings in ~/.cache/fmnist/audit/<dataset>/, so a "
                 "second call is instant. Needs the explain extra.")
    add_fields(a.add_argument_group("audit"), AuditConfig, AuditConfig(), "audit.")
    add_fields(a.add_argument_group("label errors"), CrossValConfig, CrossValConfig(), "cv.")
    a.add_argument("--out", type=Path, metavar="DIR", help="also copy audit.json and audit.png "
                   "here (they are always kept in the cache)")
    a.add_argument("--redo", action="store_true", help="audit again even if the cache holds it")
    a.add_argument("--threads", type=int_at_least(0), default=0,
                   help="CPU threads for torch (0: every usable core)")
    a.add_argument("--quiet", action="store_true", help="print only the table")
    return a


def _data_parser(sub) -> None:
    from .config import DataConfig
    from .data import DATASETS, DEFAULT_DATASET
    from .flags import int_at_least

    helps = {f.name: f.metadata["help"] for f in DataConfig.__dataclass_fields__.values()}
    data = sub.add_parser("data", help="get, verify, summarise and show the data sets")
    dsub = data.add_subparsers(dest="data_cmd", required=True, metavar="{get,info,verify,show,audit}")
    for name, text in (("get", "find the IDX files or download them, then verify"),
                       ("info", "counts per split and class, pixel mean and std"),
                       ("verify", "check every file against its official checksum"),
                       ("show", "write a PNG grid of samples, one row per class"),
                       ("audit", None)):
        p = _audit_parser(dsub) if name == "audit" else _command(dsub, name, cmd_data, text)
        p.add_argument("--dataset", default=DEFAULT_DATASET, choices=DATASETS.names(),
                       help=f"{helps['dataset']} (default: %(default)s)")
        p.add_argument("--data-dir", type=Path, metavar="DIR", help=helps["data_dir"])
    dsub.choices["get"].add_argument("--quiet", action="store_true", help="no progress bar")
    show = dsub.choices["show"]
    show.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG to write (default: %(default)s)")
    show.add_argument("--split", choices=("train", "test"), default="train")
    show.add_argument("--per-class", type=int_at_least(1, 100), default=10, help="images per class row (default: %(default)s)")
    show.add_argument("--seed", type=int_at_least(0), default=0, help="which samples (default: 0)")


def _command(sub, name: str, func, text: str, **kw) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=text, **kw)
    p.set_defaults(func=func)
    return p


# ---------------------------------------------------------------- train, evaluate, predict
def cmd_train(args) -> None:
    from . import api, recipes
    from .build import check
    from .flags import overrides
    from .runs import load_config

    given, log = overrides(args), None if args.quiet else print
    if args.resume is not None:
        if given or args.out is not None or args.recipe is not None:
            raise ConfigError("--resume continues a run with the settings saved in its "
                              "config.json; drop the other training flags")
        if args.dry_run:  # what the resume would refuse, a dry run refuses too
            config = load_config(args.resume)
            from .device import resolve_device
            from .runs import CHECKPOINT, load_checkpoint

            if not (Path(args.resume) / CHECKPOINT).exists():
                load_checkpoint(Path(args.resume) / CHECKPOINT)  # its clear error
            resolve_device(config.train.device)
            print(json.dumps(config.to_dict(), indent=2))
            return
        run = api.resume(args.resume, progress=not args.quiet, log=log, plots=not args.no_plots)
    else:
        config = recipes.config_from(args.recipe, given)
        check(config)  # unknown names and bad keywords, before any data is loaded
        if args.dry_run:
            from .device import resolve_device

            resolve_device(config.train.device)  # --device cuda without a GPU: refused here too
            print(recipes.describe(config, args.recipe, given), file=sys.stderr)
            print(json.dumps(config.to_dict(), indent=2))
            return
        run = api.train(config, out=args.out, root=args.runs_dir, progress=not args.quiet, log=log,
                        argv=["fmnist", *sys.argv[1:]], plots=not args.no_plots)
    print(run.headline())


def cmd_evaluate(args) -> None:
    from .api import open_run
    from .metrics import format_summary

    run = open_run(args.run_dir, args.device)
    print(format_summary(run.evaluate(args.split, args.data_dir), f"{run.dir}: {args.split}"))


def cmd_predict(args) -> None:
    if args.run_dir is None and args.onnx is None:
        raise ConfigError("give a RUN_DIR, or --onnx MODEL.onnx (from `fmnist export`)")
    if args.run_dir is not None and args.onnx is not None:
        raise ConfigError("give a RUN_DIR or --onnx MODEL.onnx, not both")
    if args.onnx is not None:  # onnxruntime alone: torch is never imported on this path
        if args.device != "auto":
            raise ConfigError("--device chooses where a RUN_DIR's model runs; --onnx runs on "
                              "the CPU with onnxruntime: drop --device")
        from .export.runtime import predict_onnx
        p = predict_onnx(args.onnx, args.images, args.split, args.out, args.data_dir)
    else:
        from .api import open_run, predict
        p = predict(open_run(args.run_dir, args.device), args.images, args.split, args.out,
                    args.data_dir)
    print(p.summary())
    if p.failures:  # the readable files were predicted; the others are named
        raise FmnistError(f"{len(p.failures)} of {len(args.images)} files not predicted: "
                          + "; ".join(p.failures))


def cmd_list(args) -> None:
    if args.command == "recipes":
        from .recipes import recipe_table
        print(recipe_table())
    elif args.command == "models":
        from .models import format_model_table
        print(format_model_table())
    else:
        from .optim import format_optimizer_table
        print(format_optimizer_table())


def _train_parser(sub) -> None:
    from .config import DEVICES, RunConfig
    from .flags import add_config_flags

    from .recipes import RECIPES

    p = _command(sub, "train", cmd_train, "train a model, evaluate it on the test split, write a run",
                 description="Train on the training split minus a validation split, keep the best weights "
                 "by validation accuracy, score them on the test images, write a run directory. "
                 "Every model starts from its own recipe (`fmnist recipes`; the defaults shown are "
                 "the default recipe's); --dry-run prints the settings a command line gives.")
    p.add_argument("--recipe", choices=RECIPES.names(), help="start from a named recipe instead "
                   "of the model's own; flags given override its settings (see `fmnist recipes`)")
    add_config_flags(p, RECIPES.get("default").config())
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, help="run directory (default: RUNS_DIR/<time>-<model>)")
    g.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs")
    g.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a killed run from "
                   "its last checkpoint with its saved settings (other training flags are refused)")
    _outputs(g, quiet="no progress bar or epoch lines", dry_run="print the config and exit")
    e = _command(sub, "evaluate", cmd_evaluate, "re-score a run's weights on a split")
    pr = _command(sub, "predict", cmd_predict, "predictions of a run (or an exported ONNX "
                  "model) for a split, IDX files or pictures")
    e.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    pr.add_argument("run_dir", type=Path, metavar="RUN_DIR", nargs="?",
                    help="the run whose weights predict (or give --onnx)")
    pr.add_argument("--onnx", type=Path, metavar="MODEL.onnx", help="score with a model from "
                    "`fmnist export` in onnxruntime instead of a run (torch is not loaded)")
    for q in (e, pr):
        q.add_argument("--device", choices=DEVICES, default="auto")
        q.add_argument("--data-dir", type=Path, metavar="DIR", help=READER_DATA_DIR)
    e.add_argument("--split", choices=("test", "train"), default="test")
    src = pr.add_mutually_exclusive_group()
    src.add_argument("--split", choices=("test", "train"), default="test")
    src.add_argument("--images", type=Path, nargs="+", metavar="FILE", help="IDX files of uint8 "
                     "28x28 images, or pictures (PNG, JPEG, ...) prepared like the data set's")
    pr.add_argument("--out", type=Path, help="CSV to write (default: predictions-<what>.csv in "
                    "RUN_DIR, or beside MODEL.onnx)")
    _command(sub, "models", cmd_list, "list the models with their parameter counts")
    _command(sub, "optimizers", cmd_list, "list the optimizers with their defaults")
    _command(sub, "recipes", cmd_list, "list the recipes: model, expected accuracy and time, how chosen")


def _outputs(g, quiet: str, dry_run: str) -> None:
    g.add_argument("--no-plots", action="store_true", help="draw no figures")
    g.add_argument("--quiet", action="store_true", help=quiet)
    g.add_argument("--dry-run", action="store_true", help=dry_run)


# ---------------------------------------------------------------- compare
def cmd_compare(args) -> None:
    import time

    from .compare import Execution, check_plan, format_table, make_plan, run_plan
    from .flags import given, overrides

    plan = make_plan(**given(args, "compare."), overrides=overrides(args),
                     extra={"command": " ".join(["fmnist", *sys.argv[1:]])})
    execution = Execution(**given(args, "exec."))
    out = args.out or Path("comparisons") / f"{time.strftime('%Y%m%d-%H%M%S')}-{plan.base.model.name}"
    if args.dry_run:  # as train's: a plan whose cells would fail is refused, not printed
        check_plan(plan)
        if execution.ray is None:  # here, not on a Ray cluster that may have the GPUs
            from .device import resolve_device

            resolve_device(plan.base.train.device)
    print(plan.describe() + ("" if args.dry_run else f" -> {out}"))
    if args.dry_run:
        print(json.dumps(plan.settings(), indent=2))
        return
    summary = run_plan(plan, out, log=None if args.quiet else print, execution=execution, progress=not args.quiet)
    print(format_table(summary["rows"], summary["paper"]))
    if not args.no_plots:
        args.directory, args.redraw, args.data_dir = out, True, None
        cmd_report(args)


def _compare_parser(sub) -> None:
    from .compare import Execution, Options, protocol_base
    from .flags import add_config_flags, add_fields

    p = _command(sub, "compare", cmd_compare, "compare optimizers over several seeds (DeepOBS-style)",
                 description="Train one model with several optimizers and seeds the DeepOBS way; "
                 "each cell an ordinary run directory. The same command continues an interrupted "
                 "comparison (give --out). Flags given override a --preset's settings.")
    g = p.add_argument_group("comparison")
    add_fields(g, Options, Options(), "compare.")
    add_fields(p.add_argument_group("execution"), Execution, Execution(), "exec.")
    g.add_argument("--out", type=Path, help="comparison directory (default: comparisons/<time>-<model>)")
    _outputs(g, quiet="print only the table", dry_run="check every cell's settings (as train's does), "
             "print the plan and exit")
    add_config_flags(p, protocol_base(), skip=frozenset(
        {"optim.name", "optim.lr", "train.seed", "train.select", "train.eval_test"}), helps={
        # train's text says another --optimizer resets it; compare has --optimizers, and applies it to all
        "optim.weight_decay": "weight decay on conv/linear weights, for every optimizer of the "
                              "comparison (none: each optimizer's own)"})


# ---------------------------------------------------------------- plot, report
def cmd_report(args) -> None:
    from .api import redraw
    from .report import write_report

    written = redraw(args.directory, args.data_dir) if args.command == "plot" or args.redraw else []
    if args.command != "plot":
        written.append(write_report(args.directory))
    for path in written:
        print(f"wrote {path}")


def _plot_parsers(sub) -> None:
    p = _command(sub, "plot", cmd_report, "(re)draw a run's or a comparison's figures from its files")
    r = _command(sub, "report", cmd_report, "write DIR/report.html: one self-contained page")
    for q in (p, r):
        q.add_argument("directory", type=Path, metavar="DIR", help="run or comparison directory")
        q.add_argument("--data-dir", type=Path, metavar="DIR", help=READER_DATA_DIR)
    r.add_argument("--redraw", action="store_true", help="redraw the figures first")


# ---------------------------------------------------------------- explain
def cmd_explain(args) -> None:
    from .explain import ExplainConfig, explain_run
    from .flags import given
    from .report import write_report

    cfg = ExplainConfig(**given(args, "explain."))
    result = explain_run(args.run_dir, args.data_dir, args.device, cfg, log=None if args.quiet else print)
    for name, why in result.notes.items():
        print(f"{name}: not drawn: {why}")
    for path in [*result.files, write_report(args.run_dir)]:
        print(f"wrote {path}")


def _explain_parser(sub) -> None:
    from .config import DEVICES
    from .explain import ExplainConfig
    from .flags import add_fields

    p = _command(sub, "explain", cmd_explain, "draw what a run's model learned: attributions, "
                 "t-SNE of its features, first-layer filters, class means",
                 description="Explain a run's model into its directory: Integrated Gradients and "
                 "occlusion maps (Captum) for two right and two wrong test images per class, a "
                 "t-SNE map of the penultimate-layer features of every test image, the first "
                 "convolution's filters, each class's mean image after input scaling; then "
                 "rewrite report.html with them. A figure the model has no layer for is skipped "
                 "with the reason. Needs the explain extra.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    add_fields(p.add_argument_group("explain"), ExplainConfig, ExplainConfig(), "explain.")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--data-dir", type=Path, metavar="DIR", help=READER_DATA_DIR)
    p.add_argument("--quiet", action="store_true", help="no progress lines: print only the "
                   "files written and why any figure was not drawn")


# ---------------------------------------------------------------- export, demo
def cmd_export(args) -> None:
    from .device import set_threads
    from .export.bundle import export_run, parse_formats

    formats = parse_formats(args.format)
    set_threads(args.threads)
    for path in export_run(args.run_dir, formats, args.out, args.data_dir, args.tolerance):
        print(f"wrote {path}")


def cmd_demo(args) -> None:
    from .device import set_threads
    from .export.demo import build_demo

    set_threads(args.threads)
    site = build_demo(args.run_dir, args.out, args.data_dir, args.ort_dir, args.tolerance)
    print(f"wrote {site}/ (index.html, model.onnx, onnxruntime-web); try it offline:\n"
          f"  python -m http.server --directory {site} 8000   # then open http://127.0.0.1:8000/")


def _tolerance(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number > 0")
    return value


def _export_parsers(sub) -> None:
    from .flags import int_at_least

    x = _command(sub, "export", cmd_export, "write a run's model as ONNX (verified) and safetensors",
                 description="Export a run's model: model.onnx takes uint8 pixels (N, 28, 28) "
                 "and does the run's input scaling inside; it is scored by onnxruntime and "
                 "torch on the test images and written only if they agree. model.safetensors "
                 "holds the fp32 weights, model.json the model card (both read back and "
                 "checked first).")
    x.add_argument("--format", default="onnx,safetensors", metavar="LIST",
                   help="comma-separated: onnx, safetensors (default: %(default)s)")
    x.add_argument("--out", type=Path, metavar="DIR", help="folder to write (default: RUN_DIR/export)")
    d = _command(sub, "demo", cmd_demo, "write a static web page that runs the model in the browser",
                 description="Write a static site (index.html, demo.js, model.onnx, the "
                 "onnxruntime-web runtime) that classifies drawings and photos in the browser, "
                 "offline, served by any static server (python -m http.server).")
    d.add_argument("--out", type=Path, metavar="DIR", default=Path("site"),
                   help="site folder (default: %(default)s; a demo fmnist wrote there, as its "
                   "fmnist-demo.json says, is replaced; any other non-empty folder is refused)")
    d.add_argument("--ort-dir", type=Path, metavar="DIR", help="onnxruntime-web's dist/ folder "
                   "(default: web/node_modules/onnxruntime-web/dist, installed by `make demo-deps`)")
    for q in (x, d):
        q.add_argument("run_dir", type=Path, metavar="RUN_DIR")
        q.add_argument("--data-dir", type=Path, metavar="DIR", help=READER_DATA_DIR)
        q.add_argument("--tolerance", type=_tolerance, metavar="T", help="largest |logit difference| "
                       "between torch and onnxruntime accepted (default: 1e-4)")
        q.add_argument("--threads", type=int_at_least(0), default=0,
                       help="CPU threads for torch (0: every usable core)")


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmnist", description="Train, compare and explain image classifiers on Fashion-MNIST.")
    parser.add_argument("--version", action="version", version=f"fmnist {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_data_parser, _train_parser, _compare_parser, _plot_parsers, _explain_parser,
                _export_parsers):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status (0, 1 for an FmnistError, 130 when interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
        return 0
    except FmnistError as exc:
        print(f"fmnist: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fmnist: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fmnist evaluate RUN | head -1`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # 128 + SIGPIPE, as a shell reports it


# Commands that hold no child process or service when they end: after them the process
# exits at once. The interpreter's teardown of torch's modules takes 0.3-0.4 s (`import
# torch` alone: 1.7 s wall, 1.35 s of it the import), a tenth of the fast recipe's whole
# run; every file is written, closed and renamed into place before main returns.
QUICK_EXIT = frozenset({"train", "evaluate", "predict"})


class _Signalled(KeyboardInterrupt):
    """SIGINT or SIGTERM, turned into the interrupt every command already cleans up after."""


def _on_signal(signum, _frame) -> None:
    # once: a second ^C (or a TERM after an INT) during the clean-up would cut it short and
    # print a traceback from wherever it landed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _on_signal.received = signum
    raise _Signalled


def entry() -> None:
    """The `fmnist` console script (and `python -m fmnist`): main, then the exit."""
    argv = sys.argv[1:]
    # SIGTERM (kill, a scheduler's stop) as SIGINT: the clean-up of an interrupted command
    # runs (no half-started run folder, no temp files) instead of a silent death
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    code = main(argv)
    if code == 130 and getattr(_on_signal, "received", None) == signal.SIGTERM:
        code = 128 + signal.SIGTERM
    if argv and argv[0] in QUICK_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
