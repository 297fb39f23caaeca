"""A self-contained HTML page: sections of tables and PNG figures embedded as data URIs.

No script, no external stylesheet, no font or image fetched: the file opens the same from a
laptop, a cluster's file browser or an e-mail attachment. Every number shown in a table cell
carries its exact value in ``data-key`` / ``data-value`` attributes, and the whole payload the page
was built from is embedded as JSON (``<script type="application/json" id="fsv-data">``), so a
test (or a script) reads the page's numbers back without parsing text.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.15rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 0.8rem 0; } figure img { max-width: 100%; border: 1px solid #eee; } figcaption { color: #555; font-size: 0.85rem; }
code { background: #f5f5f5; padding: 0 0.2rem; }
"""


@dataclass
class Cell:
    """A table cell: ``text`` shown; ``key`` / ``value`` the exact number behind it (for readers)."""

    text: str
    key: str | None = None
    value: float | None = None


def num(value: float | None, key: str, digits: int = 2, scale: float = 100.0, suffix: str = "") -> Cell:
    """A numeric cell showing ``value · scale`` to ``digits`` decimals (a dash when None)."""
    if value is None:
        return Cell("–", key, None)
    return Cell(f"{value * scale:.{digits}f}{suffix}", key, float(value))


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has neither)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


@dataclass
class Page:
    """A report page under construction; :meth:`write` renders it."""

    title: str
    subtitle: str = ""
    kind: str = "run"
    parts: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def section(self, title: str, anchor: str) -> None:
        self.parts.append(f'<h2 id="{html.escape(anchor)}">{html.escape(title)}</h2>')

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Cell | str]], *, name: str) -> None:
        """A table; ``name`` goes to its ``data-table`` attribute."""
        head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if any(header) else ""
        out = [f'<table data-table="{html.escape(name)}">{head}']
        for row in rows:
            cells = []
            for c in row:
                if isinstance(c, Cell):
                    attrs = ' class="num"'
                    if c.key is not None:
                        attrs += f' data-key="{html.escape(c.key)}"'
                    if c.value is not None and np.isfinite(c.value):
                        attrs += f' data-value="{c.value!r}"'
                    cells.append(f"<td{attrs}>{html.escape(c.text)}</td>")
                else:
                    cells.append(f"<td>{html.escape(str(c))}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        self.parts.append("".join(out) + "</table>")

    def figure(self, png: bytes, caption: str, *, name: str) -> None:
        """A PNG embedded as a data URI, with its caption."""
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        self.parts.append(
            f'<figure data-figure="{html.escape(name)}"><img alt="{html.escape(caption)}" src="{uri}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )

    def render(self) -> str:
        payload = json.dumps(_finite(self.data), default=str, allow_nan=False).replace("<", "\\u003c")
        return (
            f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f'<style>{STYLE}</style></head>\n<body data-fsv-report="{html.escape(self.kind)}">'
            f'<h1>{html.escape(self.title)}</h1><p class="sub">{html.escape(self.subtitle)}</p>\n'
            + "\n".join(self.parts)
            + f'\n<script type="application/json" id="fsv-data">{payload}</script>\n</body></html>\n'
        )

    def write(self, path: Path) -> Path:
        """Written to a temporary name and renamed, so a failed report leaves no half page."""
        from fsv.errors import FsvInputError
        from fsv.files import write_text_atomic

        path = Path(path)
        if not path.parent.is_dir():
            raise FsvInputError(f"cannot write {path}: folder {path.parent} does not exist; create it first")
        write_text_atomic(path, self.render())
        return path
