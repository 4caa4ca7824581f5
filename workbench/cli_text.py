"""Terminal text for the `workbench` command and the departments' command groups: columns aligned
by display width (Chinese characters take two columns), and choices named in Chinese that also
take their English names."""
from __future__ import annotations

from typing import Mapping

import click


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal (wcwidth: a CJK character is two)."""
    from wcwidth import wcswidth

    w = wcswidth(text)
    return w if w >= 0 else len(text)


def text_columns(rows: list[list[str]], right=frozenset(), gap: int = 2) -> list[str]:
    """Rows of cells as lines with aligned columns by display width; columns whose index is
    in `right` are right-aligned (numbers)."""
    if not rows:
        return []
    widths = [max(display_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = []
        for i, cell in enumerate(r):
            pad = " " * (widths[i] - display_width(cell))
            cells.append(pad + cell if i in right else cell + pad)
        out.append((" " * gap).join(cells).rstrip())
    return out


class ChineseChoice(click.ParamType):
    """A choice shown in Chinese (help, errors) that also takes its English name and any alias:
    `labels` maps each value the command works with (e.g. "dispatch") to its Chinese name
    ("派遣"); `aliases` maps further accepted words to a value. Converts to the value."""

    name = "choice"

    def __init__(self, labels: Mapping[str, str], aliases: Mapping[str, str] | None = None):
        self.labels = dict(labels)
        self.lookup = {}
        for value, label in self.labels.items():
            self.lookup[value] = value
            self.lookup[value.lower()] = value
            self.lookup[label] = value
        for word, value in (aliases or {}).items():
            self.lookup.setdefault(word, value)

    def get_metavar(self, param, ctx=None) -> str:   # click 8.1 passes (param), 8.2 (param, ctx)
        return "[" + "|".join(self.labels.values()) + "]"

    def listing(self) -> str:
        return "、".join(f"{label}（{value}）" for value, label in self.labels.items())

    def convert(self, value, param, ctx):
        if value in self.labels:
            return value
        key = str(value).strip()
        found = self.lookup.get(key) or self.lookup.get(key.lower())
        if found is None:
            self.fail(f"“{value}”不是可选的操作；可选：{self.listing()}", param, ctx)
        return found

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(v) for v in self.labels.values() if v.startswith(incomplete)]


__all__ = ["ChineseChoice", "display_width", "text_columns"]
