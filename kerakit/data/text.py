"""Text: folders of .txt files and CSV text columns, a `keras.layers.TextVectorization`
adapted on the training split, and the raw strings a run's saved model takes (keras.io's
"Text classification from scratch").

The flow, as the keras.io example writes it by hand:

1. `load_text_folder` (`text:PATH`, as `keras.utils.text_dataset_from_directory` reads it:
   one sub-folder of .txt files per class, class names sorted) or `text_column` (a CSV's
   `text:` column): the raw texts, one string per example (a scalar, as
   `text_dataset_from_directory` gives them); the validation and test splits are carved by
   the seed;
2. `vectorize`: the layer adapted on the training split only (`vectorize_layer.adapt(text_ds)`)
   and mapped over every split, so the recipe's model trains on token ids or vectors;
3. `kerakit.data.features.raw_input_model`: a string input -> the layer -> the trained model,
   the example's `end_to_end_model`, which a run saves;
4. `read_texts`, `given_texts`: the texts of `kerakit predict` (files, a CSV column, --text).

`standardize: strip_html` is `strip_html` below, a function registered with Keras
(`kerakit>strip_html`), so the saved model names it instead of holding Python code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerakit.data.splits import carve, class_info
from kerakit.data.tables import describe_columns, read_table
from kerakit.errors import DataError, Where, data_error, did_you_mean

TEXT_EXTS = (".txt",)  # what keras.utils.text_dataset_from_directory reads
# string.punctuation, as a regex class (keras.io's f"[{re.escape(string.punctuation)}]")
PUNCTUATION = r"[!\"#\$%&'\(\)\*\+,\-\./:;<=>\?@\[\\\]\^_`\{\|\}~]"


@keras.saving.register_keras_serializable(package="kerakit", name="strip_html")
def strip_html(text: Any) -> Any:
    """TextVectorization's `standardize` for web text: lower case, HTML tags (`<br />`) made
    spaces, punctuation removed (keras.io's `custom_standardization`, any tag)."""
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, r"<[^>]*>", " ")
    return tf.strings.regex_replace(text, PUNCTUATION, "")


def text_vectorization(options: Mapping) -> Any:
    """A `keras.layers.TextVectorization` (not adapted) of a resolved `vectorize` section."""
    options = dict(options)
    standardize = {"none": None, "strip_html": strip_html}.get(
        options["standardize"], options["standardize"]
    )
    ngrams = options["ngrams"]
    return keras.layers.TextVectorization(
        max_tokens=options["max_tokens"],
        standardize=standardize,
        split=None if options["split"] == "none" else options["split"],
        ngrams=tuple(ngrams) if isinstance(ngrams, list) else ngrams,
        output_mode=options["output_mode"],
        output_sequence_length=options["output_sequence_length"],
        name="text_vectorization",
    )


def vectorize(dss: dict, spec: Mapping, batch: int = 1024) -> tuple[dict, Any]:
    """(splits of vectorized texts, the layer): adapted on the training split only, then
    mapped over every split, as keras.io's `raw_train_ds.map(vectorize_text)`."""
    from kerakit.data.features import adapt_and_map

    return adapt_and_map(text_vectorization(spec["vectorize"]), dss, batch)


def load_text_folder(root: Path, spec: dict, seed, where: Where) -> tuple:
    """(datasets by split, sizes, class info) of a `text:PATH` folder: one string per .txt
    file, labelled by its class sub-folder (the sorted names, or `class_names`)."""
    found = sorted(d.name for d in root.iterdir() if d.is_dir())
    classes = spec.get("class_names") or found
    for i, name in enumerate(classes):
        if name not in found:
            raise data_error(where.at("class_names"), i,
                             f"{root} has no sub-folder {name!r}{did_you_mean(name, found)}; "
                             f"it has: {', '.join(found) or 'none'}")  # fmt: skip
    if len(classes) < 2:
        raise data_error(
            where,
            "source",
            f"{root} has {len(classes)} sub-folder{'s' if len(classes) != 1 else ''}; put the "
            "texts of each class (two or more) in a sub-folder of its own, as "
            "keras.utils.text_dataset_from_directory reads them",
        )
    texts, labels = [], []
    for i, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in TEXT_EXTS)
        files = [p for p in files if p.is_file()]
        if not files:
            raise data_error(where, "source",
                             f"class folder {root / name} holds no .txt files; add texts or "
                             "remove the folder (or leave it out of class_names)")  # fmt: skip
        for path in files:
            text = path.read_bytes()
            if not text.strip():
                raise data_error(where, "source", f"{path} is empty; remove it or give it text")
            texts.append(text)
            labels.append(i)
    spec["class_names"] = list(classes)  # the resolved recipe records the classes used
    x = np.array(texts, dtype=object)
    train, val, test = carve((x, np.array(labels, "int32")), None, None, spec, seed, where)
    return _datasets(train, val, test) + (class_info(list(classes)),)


def _datasets(train, val, test) -> tuple[dict, dict]:
    parts = {"train": train, "val": val, "test": test}
    dss = {
        k: None if p is None else tf.data.Dataset.from_tensor_slices(p) for k, p in parts.items()
    }
    sizes = {k: 0 if p is None else len(p[0]) for k, p in parts.items()}
    return dss, sizes


def text_column(path: Path, header: list, rows: list, spec: Mapping, where: Where) -> tuple:
    """(the CSV's text column as strings, one per row; the other columns, unused)."""
    name = spec["text"]
    if name not in header:
        raise data_error(where, "text", f"{path} has no column {name!r}{describe_columns(header, name)}")  # fmt: skip
    j = header.index(name)
    cells = [row[j] for row in rows]
    empty = next((i for i, cell in enumerate(cells) if not cell.strip()), None)
    if empty is not None:
        raise data_error(where, "text",
                         f"{path} row {empty + 2}, column {name!r}: the text is empty; fill it or "
                         "remove the row")  # fmt: skip
    skip = (name, spec["target"], spec.get("sample_weight"))
    unused = [c for c in header if c not in skip]
    return np.array(cells, dtype=object), unused


def as_texts(x: Any) -> tf.Tensor:
    """Raw texts as a run's saved model takes them: a string tensor of shape (n,)."""
    if isinstance(x, (str, bytes)):
        x = [x]
    if not isinstance(x, tf.Tensor):
        x = tf.constant([v if isinstance(v, (str, bytes)) else str(v) for v in np.ravel(x)])
    return tf.reshape(x, (-1,))


def given_texts(texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(texts, a label each) of `kerakit predict RUN --text "..."`; an empty text is refused."""
    for i, text in enumerate(texts):
        if not text.strip():
            raise DataError(f"--text number {i + 1} is empty; give the text to classify")
    labels = [_label(t) for t in texts]
    return np.array(list(texts), dtype=object), labels


def read_texts(files: Sequence[str], data: Mapping | None) -> tuple[np.ndarray, list[str]]:
    """(texts, a label each) of `kerakit predict RUN FILE...`: each .txt file is one text; a
    .csv gives its rows' texts from the run's text column (`data.text`)."""
    paths = [Path(f) for f in files]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such file")
    column = (data or {}).get("text")
    if len(paths) == 1 and paths[0].suffix.lower() == ".csv":
        p = paths[0]
        if column is None:
            raise DataError(f"{p}: this run reads .txt files (one text each), not a .csv; "
                            "give .txt files or --text")  # fmt: skip
        header, rows = read_table(p)
        if column not in header:
            raise DataError(f"{p} has no column {column!r}, the text column of this run"
                            f"{describe_columns(header, column)}")  # fmt: skip
        j = header.index(column)
        texts = [row[j] for row in rows]
        for i, text in enumerate(texts):
            if not text.strip():
                raise DataError(f"{p} row {i + 2}, column {column!r}: the text is empty")
        return np.array(texts, dtype=object), [f"{p.name}[{i}]" for i in range(len(texts))]
    texts = []
    for p in paths:
        if p.suffix.lower() not in TEXT_EXTS:
            raise DataError(f"{p}: give .txt files (one text each)"
                            f"{', or one .csv with the column ' + repr(column) if column else ''}, "
                            "or --text")  # fmt: skip
        text = p.read_bytes()
        if not text.strip():
            raise DataError(f"{p}: the file is empty; give it the text to classify")
        texts.append(text)
    return np.array(texts, dtype=object), [str(p) for p in paths]


def predict_texts(files: Sequence[str], texts: Sequence[str], model: Any, data: Mapping | None
                  ) -> tuple[tf.Tensor, list[str]]:  # fmt: skip
    """(texts, a label each) of `kerakit predict`: the `--text` values, then the files'."""
    if not takes_text(model):
        shape = (
            tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else "several"
        )
        raise DataError(f"--text: this model does not take text (its inputs: {shape}); give it "
                        "input files instead")  # fmt: skip
    parts = []
    if texts:
        parts.append(given_texts(texts))
    if files:
        parts.append(read_texts(files, data))
    x = np.concatenate([x for x, _ in parts])
    return as_texts(x), [label for _, ls in parts for label in ls]


def takes_text(model: Any) -> bool:
    """Whether a model's one input is raw strings."""
    inputs = getattr(model, "inputs", None) or []
    return len(inputs) == 1 and "string" in str(inputs[0].dtype)


def _label(text: str, width: int = 40) -> str:
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= width else one_line[: width - 3] + "...")
