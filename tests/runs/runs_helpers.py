"""A tiny digits recipe for the tests of tests/runs/: a run takes a second or two."""

import json
import textwrap
from pathlib import Path


def digits_recipe(folder: Path, out: Path, *, seed: int = 1, optimizer="adam", epochs: int = 1,
                  extra: str = "", file: str | None = None) -> Path:  # fmt: skip
    """A recipe file: a small MLP on scikit-learn's digits (`extra`: more YAML lines of the
    `train:` section, indented by 2), deterministic, written into `folder`."""
    path = folder / (file or f"digits-{seed}-{len(str(optimizer))}-{epochs}.yaml")
    path.write_text(textwrap.dedent(f"""\
        name: tiny-digits
        seed: {seed}
        deterministic: true
        data: {{source: digits, flatten: true, batch_size: 128}}
        model:
          input_shape: [64]
          sequential:
            - Dense: {{units: 8, activation: relu}}
            - Dense: {{units: 10, activation: softmax}}
        compile:
          optimizer: {json.dumps(optimizer)}
          loss: sparse_categorical_crossentropy
          metrics: [accuracy]
        output: {{dir: {out}}}
        train:
          epochs: {epochs}
          callbacks: minimal
          verbose: 0
        """) + extra)  # fmt: skip
    return path
