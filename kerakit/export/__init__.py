"""Exporting a run's model for serving, with a parity gate: each artifact checked by its runtime.

    kerakit export RUN --format savedmodel,onnx,litert --quantize int8

    from kerakit.export import export
    report = export("runs/digits-cnn/RUN", ["onnx", "litert"], quantize="int8")

`formats` writes each artifact (Keras's own `model.export`; the LiteRT converter to
quantize), `runtimes` loads each in its own runtime (TensorFlow, onnxruntime, the LiteRT
interpreter), `gate` compares and times them against the Keras model, `card` writes
report.md and the model card, `run` is the flow. See docs/export.md.
"""

from kerakit.export.formats import FORMATS, QUANTIZE
from kerakit.export.gate import METRIC_DROP, TOLERANCE
from kerakit.export.run import ExportGateFailed, check_or_raise, export, parse_formats
from kerakit.export.train import after_training, saved_formats

__all__ = [
    "FORMATS", "METRIC_DROP", "QUANTIZE", "TOLERANCE", "ExportGateFailed", "after_training",
    "check_or_raise", "export", "parse_formats", "saved_formats",
]  # fmt: skip
