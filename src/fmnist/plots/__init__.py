"""Figures, data in and matplotlib Figure out (object API only, never pyplot), and the
drawers that redraw a run's or a comparison's figures from its files.

    style.py        palette, dpi, the atomic PNG writer
    run.py          one run: samples, training curves, confusion, per-class table, draw_run
    predictions.py  single predictions: the tutorial panel, the most confident mistakes
    compare.py      a comparison: curves over epochs, final accuracy bars, draw_comparison
"""
from .compare import comparison_curves, draw_comparison, final_accuracy_bars
from .predictions import mistakes_gallery, predictions_panel
from .run import confusion_figure, draw_run, draw_samples, per_class_table_figure, sample_grid, training_curves
from .style import DPI, save_figure

__all__ = [
    "DPI", "comparison_curves", "confusion_figure", "draw_comparison", "draw_run", "draw_samples",
    "final_accuracy_bars", "mistakes_gallery", "per_class_table_figure", "predictions_panel",
    "sample_grid", "save_figure", "training_curves",
]
