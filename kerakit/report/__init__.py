"""Reports, with no TensorFlow: metrics in NumPy, pictures in matplotlib, history.csv, report.md.

Every stage after the recipe may draw with it (an augmentation preview, a
run's pictures, `kerakit predict`'s tables); it imports nothing of theirs.

    kk.plot_history("runs/digits/20261129-031500")        # a run folder or its history.csv
    kk.classification_report(y_test, probs, class_names=names)
"""

from kerakit.report.history import HISTORY_FILE, history_columns, trim_history, write_history
from kerakit.report.metrics import (
    classification_report,
    confident_errors,
    confusion_matrix,
    predicted_with_confidence,
    regression_report,
    to_labels,
    to_probabilities,
)
from kerakit.report.run_report import (
    RUN_IMAGES,
    format_errors_table,
    format_regression_table,
    format_report_table,
    write_run_pictures,
    write_run_report,
)

__all__ = [
    "HISTORY_FILE", "RUN_IMAGES", "classification_report", "confident_errors", "confusion_matrix",
    "format_errors_table", "format_regression_table", "format_report_table", "history_columns",
    "predicted_with_confidence", "regression_report", "to_labels",
    "to_probabilities", "trim_history", "write_history", "write_run_pictures", "write_run_report",
]  # fmt: skip
