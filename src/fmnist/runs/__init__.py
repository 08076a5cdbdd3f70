"""The run directory, the one contract between commands: every file's reader and writer.

runs/<time>-<model>/
  config.json      every setting, the resolved facts (classes, input scaling, model
                   arguments, augmentation, precision) and the command line
  history.jsonl    one JSON record per epoch (epoch 0 = before the first step)
  checkpoint.pt    the last epoch's state (model, optimizer, loop state), for --resume
  best.pt          the weights with the best validation accuracy so far
  metrics.json     the scored weights on the test set: accuracy, loss, per class, confusion
  predictions.csv  index, true label, predicted label, the class probabilities
  explain.json     what `fmnist explain` drew (explain-*.png), skipped and why
A comparison is a folder of such run directories plus plan.json and summary.json
(comparison.py). Nothing here is a pickle that can run code (checkpoint.py).
"""
from .comparison import (MEMBERS, PLAN, SUMMARY, check_comparison_out, check_member_dir,
                         is_comparison, member_dir, member_fix, read_member, read_members,
                         read_plan, read_summary, save_plan, save_summary)
from .files import (BEST, CHECKPOINT, CONFIG, HISTORY, METRICS, PREDICTIONS, RunClaimed, check_out, check_writable, claim,
                    discard_unstarted, finite, load_config, load_facts, load_history, make_run_dir, new_run_dir, read_history,
                    read_json, read_metrics, read_predictions, save_config, save_history,
                    save_metrics, save_predictions)
from .files import EXPLAIN, EXPLAIN_FIGURES, read_explain, save_explain

__all__ = [
    "BEST", "CHECKPOINT", "CHECKPOINT_FORMAT", "CONFIG", "HISTORY", "MEMBERS", "METRICS", "PLAN",
    "PREDICTIONS", "SUMMARY", "RunStore", "check_comparison_out", "check_member_dir", "check_out",
    "check_settings",
    "check_writable", "claim", "RunClaimed", "discard_unstarted", "finite", "is_comparison", "load_checkpoint", "load_config", "load_facts",
    "load_history", "load_weights", "make_run_dir", "member_dir", "member_fix",
    "new_run_dir", "read_history", "read_json", "read_member", "read_members", "read_metrics",
    "read_plan", "read_predictions", "read_summary", "save_checkpoint", "save_config",
    "save_history", "save_metrics", "save_plan", "save_predictions", "save_summary",
    "EXPLAIN", "EXPLAIN_FIGURES", "read_explain", "save_explain",
]

# checkpoints need torch; the other files do not, so `fmnist predict --onnx` (which writes
# predictions.csv) runs without importing it: checkpoint names are imported on first use
_CHECKPOINT_NAMES = ("CHECKPOINT_FORMAT", "RunStore", "check_settings", "load_checkpoint", "load_weights",
                     "save_checkpoint")


def __getattr__(name: str):
    if name in _CHECKPOINT_NAMES:
        from . import checkpoint
        return getattr(checkpoint, name)
    raise AttributeError(f"module 'fmnist.runs' has no attribute {name!r}")
