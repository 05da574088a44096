"""The trust's sections of the pages a run becomes: report.html's calibration section (the reliability
diagram and the numbers of summary.json's "calibration") and model_card.md's "Calibration and unknown
images" (the temperature inside the graph, the ood_score output, its threshold and how to use it)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from unfreeze.apps.run_files import RunFile, read_plot

__all__ = ["calibration_section", "model_card_lines"]

_READ_SCORE = {
    "onnx": "probabilities, ood_score = session.run(None, {'image': batch})",
    "torchscript": "probabilities, ood_score = model(torch.from_numpy(batch))",
    "openvino": "result = model(batch); probabilities, ood_score = result[0], result[1]",
}


def model_card_lines(trust: Any, fmt: str) -> list[str]:
    """model_card.md's section on the calibrated probabilities and the unknown flag of an exported model.

    Example:
        >>> from unfreeze.trust import Trust
        >>> model_card_lines(Trust(), "onnx")[0]
        '## Calibration and unknown images'
    """
    lines = ["## Calibration and unknown images", ""]
    if trust.temperature != 1.0:
        precision = "" if trust.temperature_se is None else f", ± {trust.temperature_se:.3g} (one standard error)"
        lines.append(f"- the probabilities are calibrated: the graph divides the logits by the temperature "
                     f"{trust.temperature:.4f} (fitted on the validation images{precision}) before the activation;")
    else:
        lines.append("- the probabilities are the raw activation (no temperature was fitted);")
    if not trust.has_score:
        lines += ["- the model has no unknown score: every image gets one of the classes.", ""]
        return lines
    rate = f"{100 * trust.unknown_rate:g}%" if trust.unknown_rate is not None else "a share"
    lines += [
        f"- a second output `ood_score`: float32 [N], higher = less like the training images "
        f"({trust.score.method} score);",
        f"- **threshold {trust.threshold:.6g}**: an image whose `ood_score` is above it is *not one of the classes* "
        f"(the threshold flags {rate} of the validation images). Show such an image as unknown instead of its top "
        "class, or send it to a person:", "",
        "```python", f"{_READ_SCORE[fmt]}", f"unknown = ood_score > {trust.threshold:.6g}", "```", ""]
    return lines


def calibration_section(run: Path, summary: RunFile) -> dict[str, Any] | None:
    """The values of report.html's calibration section (None for a run trained before calibration existed);
    draws reliability.png into the run directory from the bins in summary.json.

    summary.json is untrusted input: the numbers are read through `RunFile` (a field of the wrong type is
    one line naming the file) and the template escapes every value.

    Example:
        >>> calibration_section(Path("runs/old"), RunFile(Path("runs/old/summary.json"), {}))
    """
    calibration = summary.section("calibration")
    if "before" not in calibration.content:
        return None
    before, after = calibration.section("before"), calibration.section("after")
    error = calibration.number("temperature_se")
    fitted = f"temperature {_number(calibration.number('temperature'))}" + (
        "" if error is None else f" ± {_number(error)} (one standard error)")
    rows = [[name, *(_number(part.number(key)) for key in ("ece", "nll", "brier"))]
            for name, part in (("no temperature", before), (fitted, after))]  # softmax or sigmoid alike
    from unfreeze.plots import plot_reliability  # matplotlib only when a report is written (--help stays light)

    plot = {"alt": "reliability diagram", "data": "", "reason": ""}
    try:
        plot_reliability(calibration.content, run / "reliability.png")
        data, plot["reason"] = read_plot(run, "reliability.png")
        plot["data"] = "" if data is None else base64.b64encode(data).decode("ascii")
    except (OSError, KeyError, TypeError, ValueError) as error:  # a hand-edited summary: the numbers still show
        plot["reason"] = f"no reliability diagram ({type(error).__name__})."
    unknown = None
    if "unknown" in calibration.content:
        part = calibration.section("unknown")
        flagged = part.number("flagged_valid")
        unknown = {"method": part.text("method", "-"), "threshold": _number(part.number("threshold")),
                   "flagged": _number(None if flagged is None else 100 * flagged),
                   # None for a multi-label run: one accuracy per image does not exist there
                   "accuracy_all": _number_or_none(part.number("accuracy_all")),
                   "accuracy_unflagged": _number_or_none(part.number("accuracy_unflagged"))}
    return {"rows": rows, "plot": plot, "unknown": unknown}


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _number_or_none(value: Any) -> str | None:
    return None if value is None else _number(value)
