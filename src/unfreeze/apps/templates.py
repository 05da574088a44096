"""Pages from templates with autoescaping, and the Content-Security-Policy each page is sent with.

Every page (report.html, the upload page, the cleaning page) is a Jinja2 template in pages/. Autoescape
is on for all of them, so a value from a run directory or a model file (a class name, a summary field, a
file name) reaches the HTML only as text: markup in it is shown, never run. Only the package's own
stylesheet is marked safe, and the policies below refuse any inline script even if markup slipped in.

Example:
    >>> "&lt;script&gt;" in render("report.html", **report_values)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

__all__ = ["PAGES", "SERVED_PAGE_POLICY", "render", "report_policy", "report_script", "stylesheet"]

PAGES = Path(__file__).parent / "pages"

# The served pages load their script and stylesheet from /static (same origin) and talk to the same
# server; nothing inline runs, nothing else is fetched, and no other site may frame them.
SERVED_PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                      "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

_ENVIRONMENT = jinja2.Environment(loader=jinja2.FileSystemLoader(PAGES), autoescape=True,
                                  undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(name: str, **values: Any) -> str:
    """The template pages/`name` filled with `values`, every value escaped (a missing one is an error).

    Example:
        >>> "<h1>a &lt;b&gt;</h1>" in render("clean.html", title="a <b>", token="t")  # doctest: +SKIP
        True
    """
    return _ENVIRONMENT.get_template(name).render(**values)


def stylesheet() -> Markup:
    """The package's style.css, trusted as is (it goes inside a <style> element, where entities are not read)."""
    return Markup((PAGES / "style.css").read_text(encoding="utf-8"))


def report_script() -> Markup:
    """The package's report.js (the rerun command's copy button), trusted as is: it is the page's only script."""
    return Markup((PAGES / "report.js").read_text(encoding="utf-8"))


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def report_policy(style: str, script: str | None = None) -> str:
    """The policy of a report page: images only embedded, the one inline style and script by their hashes.

    Only the package's own script (`report_script`) may run, by its hash: markup that a run's file
    slipped into the page could not run even if it escaped the template (no 'unsafe-inline'). Without
    `script` no script at all runs. A file opened from the disk has no server to send a header, so the
    page carries this in a meta tag.

    Example:
        >>> report_policy("body{}").startswith("default-src 'none'; script-src 'none'")
        True
    """
    scripts = "'none'" if script is None else _digest(script)
    return (f"default-src 'none'; script-src {scripts}; style-src {_digest(style)}; img-src data:; "
            "base-uri 'none'; form-action 'none'")
