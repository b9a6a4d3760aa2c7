"""Writes tickets.npz: dummy tickets shaped as the functional API guide's dummy data, 128
instead of 1,280 (https://keras.io/guides/functional_api/, "Models with multiple inputs and
outputs"). The guide's targets are pure noise; these are read off the tags, so that a model
has something to learn (`kerakit smoke` checks that it can overfit one batch).

    python configs/keras_io/make_tickets.py

Keys follow kerakit's npz names for named inputs and outputs (docs/data.md):
x_train.title, x_train.body, x_train.tags, y_train.priority, y_train.department.
"""

from pathlib import Path

import numpy as np

num_tags = 12  # Number of unique issue tags
num_words = 10000  # Size of vocabulary obtained when preprocessing text data
num_departments = 4  # Number of departments for predictions
n = 128

rng = np.random.default_rng(0)
# Dummy input data (word ids fit in int16: a smaller file)
title_data = rng.integers(num_words, size=(n, 10)).astype("int16")
body_data = rng.integers(num_words, size=(n, 100)).astype("int16")
tags_data = rng.integers(2, size=(n, num_tags)).astype("float32")
# Dummy target data: the priority score is the first tag (as floats, like the guide's
# scores in [0, 1]); the department (one-hot) is the 2-bit number of the next two tags
priority_targets = tags_data[:, :1].copy()
department = (tags_data[:, 1] + 2 * tags_data[:, 2]).astype("int64")
dept_targets = np.eye(num_departments, dtype="int8")[department]

arrays = {
    "x_train.title": title_data,
    "x_train.body": body_data,
    "x_train.tags": tags_data,
    "y_train.priority": priority_targets,
    "y_train.department": dept_targets,
}
np.savez_compressed(Path(__file__).with_name("tickets.npz"), **arrays)
