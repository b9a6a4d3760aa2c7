"""The text keys of the `data:` section, with no TensorFlow: a `text:PATH` source, a CSV's
`text: COLUMN`, and `vectorize:` (keras.io's "Text classification from scratch").

    data:
      source: text:aclImdb/train      # one sub-folder of .txt files per class
      class_names: [neg, pos]         # optional: which sub-folders, in label order
      vectorize:                      # a keras.layers.TextVectorization, adapted on the
        max_tokens: 20000             # training split only
        output_mode: int
        output_sequence_length: 500
        standardize: strip_html       # lower case, no HTML tags (<br />), no punctuation

    data:
      source: csv:reviews.csv
      target: label
      text: review                    # the one input: this column's raw strings
      vectorize: {output_mode: tf_idf, ngrams: 2, max_tokens: 20000}

`resolve_text` checks these keys and fills `vectorize`'s defaults (Keras's own);
`kerakit.data.text` reads the texts and builds, adapts and saves the layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kerakit.errors import Where
from kerakit.recipe.schema import (
    check_choice,
    check_keys,
    check_mapping,
    check_number,
    check_str,
    show,
)

# The keys a `text:PATH` source takes beside the common ones (resolve_data fills them).
TEXT_SOURCE_DEFAULTS: dict[str, Any] = {"class_names": None, "vectorize": None}
# The keys a `csv:` source takes for text, recorded only when set (old recipes keep their
# fingerprint): see OPTIONAL_KEYS in kerakit/recipe/data.py.
CSV_TEXT_KEYS = ("text", "vectorize")

STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation", "strip_html", "none")
SPLITS = ("whitespace", "character", "none")
OUTPUT_MODES = ("int", "multi_hot", "count", "tf_idf")
# `vectorize:`'s keys and defaults: TextVectorization's own arguments and defaults.
VECTORIZE_DEFAULTS: dict[str, Any] = {
    "max_tokens": None,
    "output_mode": "int",
    "output_sequence_length": None,
    "ngrams": None,
    "standardize": "lower_and_strip_punctuation",
    "split": "whitespace",
}
EXAMPLE = "vectorize: {max_tokens: 20000, output_mode: int, output_sequence_length: 500}"


def text_input(data: Mapping) -> str | None:
    """What the inputs of a resolved data section are when they are raw text: "folder" for a
    `text:` source, "column" for a CSV with `text:`; None otherwise."""
    source = data.get("source")
    if not isinstance(source, str):
        return None
    if source.startswith("text:"):
        return "folder"
    if source.startswith("csv:") and data.get("text") is not None:
        return "column"
    return None


def evaluate_keys(data: Mapping, source: str) -> tuple[str, ...]:
    """The keys of a run's data section that `kerakit evaluate --data SOURCE` keeps for a text
    run, so the other data is read as training read it (its classes, its column)."""
    kind = text_input(data)
    if kind == "folder" and source.startswith("text:"):
        return ("class_names", "vectorize")
    if kind == "column" and source.startswith("csv:"):
        return ("target", "target_type", "sample_weight", "text", "vectorize")
    return ()


def resolve_text(out: dict, kind: str, where: Where) -> None:
    """Checks the text keys of a resolved data section `out` in place (`kind`: "text" or
    "csv") and fills in `vectorize`'s defaults.

    Example:

    >>> out = {"source": "text:reviews", "class_names": None, "normalize": False,
    ...        "rescale": None, "flatten": False, "vectorize": {"output_mode": "multi_hot"}}
    >>> resolve_text(out, "text", Where())
    >>> out["vectorize"]["standardize"]
    'lower_and_strip_punctuation'
    """
    w = where.at
    if kind == "csv":
        if out.get("text") is None:
            raise w("vectorize").error(
                "vectorize turns a text input into numbers; name the CSV's text column with "
                "`text: COLUMN` (the model's one input), or remove vectorize"
            )
        check_str(out["text"], w("text"), "a column name")
        if out["text"] in (out["target"], out.get("sample_weight")):
            raise w("text").error(f"{out['text']!r} is the target or sample-weight column")
        if out.get("features") is not None:
            raise w("text").error(
                "give either `text:` (one text column, vectorized) or `features:` (columns "
                "described one by one, a text column as string_categorical), not both"
            )
    else:
        names = out.get("class_names")
        if names is not None:
            if not isinstance(names, list) or len(names) < 2:
                raise w("class_names").error(
                    f"expected a list of at least two sub-folder names, got {show(names)}"
                )
            for i, name in enumerate(names):
                check_str(name, w("class_names", i), "a sub-folder name")
                if name in names[:i]:
                    raise w("class_names", i).error(f"{name!r} is listed twice")
                if any(bad in name for bad in ("/", "\\")) or name in (".", ".."):
                    raise w("class_names", i).error(
                        f"a class is a sub-folder of the source folder, not a path: {name!r}"
                    )
    if out.get("vectorize") is None:
        what = "the text column" if kind == "csv" else "the texts"
        raise where.error(
            f"a text input needs `vectorize:`, the TextVectorization that turns {what} into "
            f"numbers; e.g. `{EXAMPLE}`"
        )
    out["vectorize"] = resolve_vectorize(out["vectorize"], w("vectorize"))
    for key in ("normalize", "flatten"):
        if out.get(key):
            raise w(key).error(f"{key} does not apply to text inputs; remove it")
    if out.get("rescale") is not None:
        raise w("rescale").error("rescale does not apply to text inputs; remove it")


def resolve_vectorize(value: Any, where: Where) -> dict:
    """Validates `data.vectorize`; returns it with TextVectorization's defaults filled in.

    Example:

    >>> resolve_vectorize({"output_mode": "tf_idf", "ngrams": 2}, Where())["split"]
    'whitespace'
    """
    check_mapping(value, where, f"a mapping of TextVectorization arguments, e.g. `{EXAMPLE}`")
    check_keys(value, list(VECTORIZE_DEFAULTS), where, section="data.vectorize")
    out = {**VECTORIZE_DEFAULTS, **value}
    mode = check_choice(out["output_mode"], OUTPUT_MODES, where.at("output_mode"), "output_mode")
    for key, choices in (("standardize", STANDARDIZE), ("split", SPLITS)):
        if out[key] is None:
            out[key] = "none"
        check_choice(out[key], choices, where.at(key), key)
    if out["max_tokens"] is not None:
        low = 3 if mode == "int" else 2  # the padding (int) and out-of-vocabulary tokens
        check_number(out["max_tokens"], where.at("max_tokens"), integer=True, minimum=low,
                     maximum=10_000_000)  # fmt: skip
    length = out["output_sequence_length"]
    if mode == "int" and length is None:
        raise where.error(
            "output_mode: int gives one token id per word, and the model needs sequences of "
            "one length: set `output_sequence_length` (keras.io's example: 500; longer texts "
            "are cut, shorter ones padded with 0)"
        )
    if length is not None:
        if mode != "int":
            raise where.at("output_sequence_length").error(
                f"output_sequence_length applies to output_mode: int only; output_mode: {mode} "
                "gives one vector per text (of max_tokens numbers). Remove it"
            )
        check_number(length, where.at("output_sequence_length"), integer=True, minimum=1,
                     maximum=1_000_000)  # fmt: skip
    ngrams = out["ngrams"]
    if isinstance(ngrams, list):
        if not ngrams:
            raise where.at("ngrams").error("expected a positive integer or a list of them")
        for i, n in enumerate(ngrams):
            check_number(n, where.at("ngrams", i), integer=True, minimum=1)
    elif ngrams is not None:
        check_number(ngrams, where.at("ngrams"), integer=True, minimum=1,
                     what="a positive integer (2: words and pairs of words), a list, or null")  # fmt: skip
    if out["split"] == "none" and ngrams is not None:
        raise where.at("ngrams").error("ngrams need words: set split to whitespace or character")
    return out
