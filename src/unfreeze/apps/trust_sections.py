"""The trust's sections of the pages a run becomes: report.html's calibration section (the reliability
diagram and the numbers of summary.json's "calibration") and model_card.md's "Calibration and unknown
images" (the temperature inside the graph, the ood_score output, its threshold and how to use it)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from unfreeze.plots import plot_reliability

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
        lines.append(f"- the probabilities are calibrated: the graph divides the logits by the temperature "
                     f"{trust.temperature:.4f} (fitted on the validation images) before the activation;")
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


def calibration_section(run: Path, calibration: Any) -> str:
    """The HTML of the section ("" for a run trained before calibration existed); draws reliability.png
    into the run directory from the bins in summary.json.

    Example:
        >>> calibration_section(Path("runs/old"), None)
        ''
    """
    if not isinstance(calibration, dict) or not isinstance(calibration.get("before"), dict):
        return ""
    before, after = calibration["before"], calibration.get("after") or {}
    rows = "".join(
        f"<tr><td>{name}</td><td>{_number(part.get('ece'))}</td><td>{_number(part.get('nll'))}</td>"
        f"<td>{_number(part.get('brier'))}</td></tr>"
        for name, part in (("raw softmax", before), (f"temperature {_number(calibration.get('temperature'))}", after)))
    parts = ["<h2>Calibration</h2>",
             "<p>How far the validation images' probabilities can be taken at their word: expected calibration error "
             "(15 bins), negative log-likelihood and Brier score, before and after the temperature that "
             "<code>predict</code>, <code>serve</code> and the exports apply.</p>",
             f"<table><tr><th></th><th>ECE</th><th>NLL</th><th>Brier</th></tr>{rows}</table>"]
    try:
        image = plot_reliability(calibration, run / "reliability.png")
        encoded = base64.b64encode(Path(image).read_bytes()).decode("ascii")
        parts.append(f'<img class="plot" alt="reliability diagram" src="data:image/png;base64,{encoded}">')
    except (OSError, KeyError, TypeError, ValueError) as error:  # a hand-edited summary: the numbers still show
        parts.append(f"<p>no reliability diagram ({html.escape(type(error).__name__)}).</p>")
    unknown = calibration.get("unknown")
    if isinstance(unknown, dict):
        parts.append(
            f"<p>Unknown flag: method {html.escape(str(unknown.get('method')))}, threshold "
            f"{_number(unknown.get('threshold'))}, flags {_number(100 * (unknown.get('flagged_valid') or 0))}% of "
            f"the validation images; accuracy on all of them {_number(unknown.get('accuracy_all'))}, on those not "
            f"flagged {_number(unknown.get('accuracy_unflagged'))}.</p>")
    return "".join(parts)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
