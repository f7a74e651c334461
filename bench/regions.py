"""Marked regions of a generated markdown file: each script rewrites its own and keeps the others."""

from __future__ import annotations

import re


def replace(old: str, start: str, end: str, text: str, *, before: str | None = None) -> str:
    """`old` with its start…end region replaced by `text`, else `text` inserted before `before`, else appended."""
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end) + "\n?", re.S)
    if pattern.search(old):
        return pattern.sub(lambda _: text, old, count=1)
    if before is not None and (at := old.find(before)) >= 0:
        return old[:at] + text.rstrip("\n") + "\n\n" + old[at:]
    return old.rstrip("\n") + "\n\n" + text if old.strip() else text
