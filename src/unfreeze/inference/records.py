"""The one prediction record: what `predict --format json|csv`, `serve`'s /predict and `evaluate --json` say
about one image, in one documented, versioned shape.

    {"file": "photos/cat.jpg",                 # as given: the path, or the upload's file name
     "label": "cat",                           # the predicted class (multi-label: a list); null on error
     "probability": 0.93,                      # of that class (multi-label: one per label); null on error
     "top_k": [{"label": "cat", "probability": 0.93}, {"label": "dog", "probability": 0.05}],
     "error": null}                            # why the image has no prediction (then label is null)

Optional fields: `unknown` (true when the image is unlike the training images) and `ood_score` (how far
from them it looks; both null for a model exported without an unknown score); `values` (a regression
model's numbers by output name: then `label` is them as text, `probability` null); `status` (an HTTP
status of this file in serve's answer, e.g. 413 for a file over the size limit); `actual` and `correct`
in `evaluate`'s rows. Nothing else appears in a record. The JSON Schema is `PREDICTION_SCHEMA`
(docs/prediction.schema.json); documents that carry records also carry `"schema_version":
SCHEMA_VERSION`. CSV has the same columns (`CSV_COLUMNS`; top_k as "label:probability;...").

Example:
    >>> record = prediction_record({"path": "a.jpg", "label": "cat", "index": 0, "prob": 0.9, "error": None,
    ...                             "top_k": [["cat", 0.9], ["dog", 0.1]]}, top_k=1)
    >>> record["top_k"], record["probability"]
    ([{'label': 'cat', 'probability': 0.9}], 0.9)
"""

from __future__ import annotations

import math
from typing import Any

from unfreeze.inference.predict import prediction_row

__all__ = [
    "CSV_COLUMNS",
    "OPTIONAL_FIELDS",
    "PREDICTION_SCHEMA",
    "SCHEMA_VERSION",
    "csv_row",
    "error_record",
    "evaluation_records",
    "prediction_record",
    "regression_records",
]

SCHEMA_VERSION = 1
OPTIONAL_FIELDS = ("unknown", "ood_score", "values", "status", "actual", "correct")
CSV_COLUMNS = ("file", "label", "probability", "top_k", "error", "unknown", "ood_score", "values")

_LABEL = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]}
_NUMBERS = {"type": "object", "additionalProperties": {"type": ["number", "null"]}}
_PROBABILITY = {"type": "number", "minimum": 0, "maximum": 1}
PREDICTION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"https://unfreeze.invalid/schemas/prediction-{SCHEMA_VERSION}.json",
    "title": f"unfreeze prediction record, version {SCHEMA_VERSION}",
    "description": "One image's prediction, as predict --format json|csv, serve's /predict and evaluate --json "
                   "write it.",
    "type": "object",
    "required": ["file", "label", "probability", "top_k", "error"],
    "additionalProperties": False,
    "properties": {
        "file": {"type": "string", "description": "the image as given: its path, or the uploaded file's name"},
        "label": {**_LABEL, "description": "the predicted class; a list for a multi-label model; null on error"},
        "probability": {"oneOf": [_PROBABILITY, {"type": "array", "items": _PROBABILITY}, {"type": "null"}],
                        "description": "the predicted class's probability (multi-label: one per label); "
                                       "null on error"},
        "top_k": {"type": "array", "description": "the most probable classes, most first; empty on error",
                  "items": {"type": "object", "required": ["label", "probability"], "additionalProperties": False,
                            "properties": {"label": {"type": "string"}, "probability": _PROBABILITY}}},
        "error": {"type": ["string", "null"], "description": "why there is no prediction; null when there is one"},
        "unknown": {"type": ["boolean", "null"], "description": "the image is unlike the training images (above "
                    "the model's unknown threshold); null for a model exported without an unknown score"},
        "ood_score": {"type": ["number", "null"], "description": "out-of-distribution score (higher: less like "
                                                                 "the training images)"},
        "status": {"type": "integer", "description": "serve: this file's HTTP status (413: over the size limit)"},
        "values": {**_NUMBERS, "description": "a regression model's predicted numbers by output name (its label "
                                              "is them as text; probability null, top_k empty)"},
        "actual": {"oneOf": [*_LABEL["oneOf"], _NUMBERS], "description": "evaluate: the image's true label (a "
                                                                         "regression model: its numbers)"},
        "correct": {"type": "boolean", "description": "evaluate: the prediction equals the true label"},
    },
}


def _finite(value: Any) -> Any:
    """NaN and infinities become None (JSON has no NaN); everything else as it is."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def error_record(file: str, error: str, **extra: Any) -> dict[str, Any]:
    """The record of an image without a prediction.

    Example:
        >>> error_record("notes.txt", "not an image")["label"] is None
        True
    """
    return {"file": file, "label": None, "probability": None, "top_k": [], "error": error, **extra}


def prediction_record(row: dict[str, Any], top_k: int, file: str | None = None) -> dict[str, Any]:
    """A `predict_batch` / `prediction_row` row as the record (its `top_k` cut to `top_k` entries).

    The row's own `top_k` pairs are used (ask `predict_batch` for at least 2); without them a
    single-label row's top_k is its one predicted class. Optional fields (`unknown`, `ood_score`) are
    kept where the row has them.

    Example:
        >>> prediction_record({"path": "b.png", "label": None, "index": -1, "prob": float("nan"),
        ...                    "error": "file not found"}, 3)["probability"] is None
        True
    """
    name = str(row.get("path", "")) if file is None else file
    extra = {key: _finite(row[key]) for key in ("unknown", "ood_score") if key in row}
    if row.get("error") is not None:
        return error_record(name, str(row["error"]), **extra)
    if "values" in row:  # a regression model: numbers, no classes to rank
        return {"file": name, "label": row["label"], "probability": None, "top_k": [], "error": None,
                "values": {str(key): _finite(float(value)) for key, value in row["values"].items()}, **extra}
    pairs = row.get("top_k")
    if pairs is None:
        pairs = [[row["label"], row["prob"]]] if isinstance(row["label"], str) else []
    alternatives = [{"label": str(label), "probability": float(probability)} for label, probability in pairs[:top_k]]
    return {"file": name, "label": row["label"], "probability": _finite(row["prob"]), "top_k": alternatives,
            "error": None, **extra}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list):
        return ";".join(f"{entry['label']}:{entry['probability']:.6f}" if isinstance(entry, dict) else _cell(entry)
                        for entry in value)
    if isinstance(value, dict):  # a regression model's numbers: name=value;...
        return ";".join(f"{key}={_cell(number)}" for key, number in value.items())
    return str(value)


def csv_row(record: dict[str, Any], columns: tuple[str, ...] = CSV_COLUMNS) -> list[str]:
    """The record's CSV cells in `columns` order: lists joined by ";", top_k as "label:probability".

    Example:
        >>> csv_row({"file": "a.jpg", "label": "cat", "probability": 0.5, "error": None,
        ...          "top_k": [{"label": "cat", "probability": 0.5}]})
        ['a.jpg', 'cat', '0.500000', 'cat:0.500000', '', '', '', '']
    """
    return [_cell(record.get(column)) for column in columns]


def evaluation_records(interpretation: Any, top_k: int = 3,
                       flags: list[tuple[bool | None, float | None]] | None = None) -> list[dict[str, Any]]:
    """One record per image of a labelled set, in the dataset's order, with `actual` and `correct`.

    `interpretation` is a `ClassificationInterpretation` over the set; an image that could not be read
    gets an error record (with its `actual` label). `flags`: each predicted image's (unknown, ood_score),
    in the interpretation's order (None: the model has no unknown score, both null).

    Example:
        >>> records = evaluation_records(ClassificationInterpretation.from_learner(learn, dl=loader))  # doctest: +SKIP
        >>> records[0]["actual"], records[0]["correct"]  # doctest: +SKIP
        ('cat', True)
    """
    dataset = interpretation.dl.dataset
    positions = {int(index): position for position, index in enumerate(interpretation.item_indices.tolist())}
    records = []
    for index, (path, label) in enumerate(dataset.items):
        actual = label if isinstance(label, str) else list(label)
        if index not in positions:
            reason = getattr(dataset, "dropped", {}).get(index, "not predicted")
            records.append(error_record(str(path), str(reason), unknown=None, ood_score=None, actual=actual))
            continue
        unknown, score = flags[positions[index]] if flags is not None else (None, None)
        row = prediction_row(interpretation.probs[positions[index]], interpretation.task, interpretation.vocab,
                             max(top_k, 2), unknown, score)
        record = prediction_record({**row, "path": str(path)}, top_k)
        predicted = record["label"]
        correct = predicted == actual if isinstance(actual, str) else sorted(predicted or []) == sorted(actual)
        records.append({**record, "actual": actual, "correct": bool(correct)})
    return records


def regression_records(dataset: Any, predictions: Any, task: Any, vocab: list[str]) -> list[dict[str, Any]]:
    """One record per image of a regression test set, in the dataset's order: `values` and the `actual` numbers.

    `predictions` are the task's outputs of the readable images, in order (`get_preds(dl=loader)[0]`).

    Example:
        >>> outputs = learn.get_preds(dl=loader)[0]  # doctest: +SKIP
        >>> records = regression_records(loader.dataset, outputs, learn.task, vocab)  # doctest: +SKIP
    """
    dropped = getattr(dataset, "dropped", {})
    outputs = iter(predictions)
    records = []
    for index, (path, label) in enumerate(dataset.items):
        numbers = [float(value) for value in (label if isinstance(label, (list, tuple)) else [label])]
        actual = {name: _finite(value) for name, value in zip(vocab, numbers, strict=False)}
        if index in dropped:
            records.append(error_record(str(path), str(dropped[index]), actual=actual))
            continue
        row = prediction_row(next(outputs), task, vocab)
        records.append({**prediction_record({**row, "path": str(path)}, 1), "actual": actual})
    return records
