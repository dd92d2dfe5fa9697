"""The ``--check`` / write step every generator in scripts/ shares."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path


def write_or_check(target: Path, expected: str, *, check: bool, command: str) -> int:
    """Write ``expected`` to ``target`` if it differs; with ``check``, only compare: exit 1 and a
    diff on stdout when ``target`` is not current (``command`` is what regenerates it)."""
    current = target.read_text() if target.exists() else ""
    if check:
        if current == expected:
            return 0
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), expected.splitlines(True), str(target), "generated"))
        print(f"\n{target} is not current: run {command}", file=sys.stderr)
        return 1
    if current != expected:
        target.write_text(expected)
        print(f"wrote {target}")
    return 0
