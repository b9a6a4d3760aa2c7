"""Regenerate the small data files the example recipes use (run from the repo root).

    python configs/data/make_data.py

The first two come from data sets bundled inside scikit-learn; none needs the network:
- digits_halves.npz: the 8x8 digits cut into a top and a bottom half (two
  inputs) with two targets, the digit and its parity (two outputs), for
  configs/functional_two_io.yaml.
- breast_cancer.csv: the Wisconsin breast cancer table (30 numeric features,
  a 0/1 `malignant` target), for configs/binary_classifier.yaml.
- heart_tiny.csv: 60 synthetic rows with the columns of keras.io's heart-disease
  table (numbers, integer categories, the text column `thal`, a 0/1 `target`), for
  configs/heart_features.yaml.
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

# heart_tiny.csv: 60 synthetic rows with the columns of keras.io's heart-disease table
# (numbers, integer categories, the text column `thal`), for configs/heart_features.yaml.
rng = np.random.default_rng(18)
n = 60
thal = rng.choice(["fixed", "normal", "reversible"], n, p=[0.15, 0.5, 0.35])
sex, cp, ca = rng.integers(0, 2, n), rng.integers(0, 4, n), rng.integers(0, 4, n)
age, oldpeak = rng.integers(30, 78, n), rng.gamma(1.2, 0.8, n)
risk = 0.04 * (age - 55) + 0.8 * sex + 0.6 * ca + 0.7 * oldpeak + 1.2 * (thal == "reversible")
score = risk + rng.normal(0, 0.8, n)
target = (score > np.median(score)).astype(int)
columns = {
    "age": age,
    "sex": sex,
    "cp": cp,
    "trestbps": rng.integers(94, 190, n),
    "chol": rng.integers(150, 400, n),
    "fbs": (rng.random(n) < 0.15).astype(int),
    "restecg": rng.integers(0, 3, n),
    "thalach": rng.integers(90, 200, n),
    "exang": rng.integers(0, 2, n),
    "oldpeak": oldpeak.round(1),
    "slope": rng.integers(1, 4, n),
    "ca": ca,
    "thal": thal,
    "target": target,
}
rows = [",".join(columns)]
rows += [",".join(str(columns[c][i]) for c in columns) for i in range(n)]
(here / "heart_tiny.csv").write_text("\n".join(rows) + "\n")
print("wrote", here / "digits_halves.npz", here / "breast_cancer.csv", "and", here / "heart_tiny.csv")
