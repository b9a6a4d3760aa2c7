"""Regenerate the small data files the example recipes use (run from the repo root).

    python configs/data/make_data.py

Both come from data sets bundled inside scikit-learn, so no network is needed:
- digits_halves.npz: the 8x8 digits cut into a top and a bottom half (two
  inputs) with two targets, the digit and its parity (two outputs), for
  configs/functional_two_io.yaml.
- breast_cancer.csv: the Wisconsin breast cancer table (30 numeric features,
  a 0/1 `malignant` target), for configs/binary_classifier.yaml.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits

here = Path(__file__).parent

digits = load_digits()
images = (digits.images * 16).clip(0, 255).astype("uint8")[..., None]  # 0..16 -> 0..256, 8-bit
labels = digits.target.astype("int64")
rng = np.random.default_rng(0)
order = rng.permutation(len(labels))
images, labels = images[order], labels[order]
n_test = 360
arrays = {}
for split, sl in (("train", slice(n_test, None)), ("test", slice(0, n_test))):
    arrays[f"x_{split}.top"] = images[sl, :4]
    arrays[f"x_{split}.bottom"] = images[sl, 4:]
    arrays[f"y_{split}.digit"] = labels[sl]
    arrays[f"y_{split}.parity"] = (labels[sl] % 2).astype("float32")
np.savez_compressed(here / "digits_halves.npz", **arrays)

cancer = load_breast_cancer()
header = [name.replace(" ", "_") for name in cancer.feature_names] + ["malignant"]
target = 1 - cancer.target  # sklearn: 0 = malignant; here 1 = malignant
rows = [",".join(header)]
rows += [",".join(f"{v:.6g}" for v in row) + f",{t}" for row, t in zip(cancer.data, target)]
(here / "breast_cancer.csv").write_text("\n".join(rows) + "\n")
print("wrote", here / "digits_halves.npz", "and", here / "breast_cancer.csv")
