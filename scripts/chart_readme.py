#!/usr/bin/env python3
"""Generate helm/rotator/README.md from helm/rotator/README.tmpl.md and the `# --` comments of values.yaml.

    python3 scripts/chart_readme.py           # (re)write helm/rotator/README.md
    python3 scripts/chart_readme.py --check   # exit 1 and show a diff when it is not current

The conventions are helm-docs' (as in the prometheus-community charts), in pure Python:
a `# -- text` comment (continued by the `#` lines right after it) documents the key on the
next line; `# -- (type) text` overrides the type shown. Every value must be documented,
by its own comment or by one on a mapping that contains it; an undocumented value is an
error, so the table can never silently miss one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from generated_file import write_or_check

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "rotator"
MARKER = "{{ values_table }}"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_.-]*|\"[^\"]+\"):(?P<rest>.*)$")
_DOC = re.compile(r"^ *# -- ?(?:\((?P<type>[a-z]+)\) )?(?P<text>.*)$")
_MORE = re.compile(r"^ *#(?! --) ?(?P<text>.*)$")


class UndocumentedValue(Exception):
    pass


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: object
    description: str


def _type_of(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _lookup(values: dict, path: list[str]) -> object:
    node: object = values
    for part in path:
        node = node[part]  # type: ignore[index]
    return node


def parse(text: str) -> list[Row]:
    """The documented values of a values.yaml, in file order."""
    values = yaml.safe_load(text) or {}
    rows: list[Row] = []
    undocumented: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    doc: list[str] | None = None
    doc_type: str | None = None
    list_indent: int | None = None  # inside a block list: its items are one value
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            doc, doc_type = None, None
            continue
        indent = len(line) - len(line.lstrip(" "))
        if list_indent is not None and (indent > list_indent or (indent == list_indent and stripped.startswith("-"))):
            continue
        list_indent = None
        if match := _DOC.match(line):
            doc, doc_type = [match["text"].strip()], match["type"]
            continue
        if stripped.startswith("#"):
            if doc is not None and (more := _MORE.match(line)):
                doc.append(more["text"].strip())
            continue
        if stripped.startswith("-"):
            list_indent = indent
            continue
        match = _KEY.match(line)
        if not match:
            raise ValueError(f"values.yaml: cannot read line {line!r}")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match["key"].strip('"')
        path = [k for _, k, _ in stack] + [key]
        value = _lookup(values, path)
        rest = match["rest"].split(" #")[0].strip()
        block_mapping = isinstance(value, dict) and rest == ""
        if rest == "" and isinstance(value, list):
            list_indent = indent  # its items follow, at this indent or deeper
        inherited = any(documented for _, _, documented in stack)
        if doc is not None:
            rows.append(Row(".".join(path), doc_type or _type_of(value), value, " ".join(doc).strip()))
        elif not block_mapping and not inherited:
            undocumented.append(".".join(path))
        stack.append((indent, key, doc is not None or inherited))
        doc, doc_type = None, None
    if undocumented:
        raise UndocumentedValue("values without a `# --` comment: " + ", ".join(undocumented))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(value: object) -> str:
    if isinstance(value, dict) and not value:
        return "`{}`"
    return "`" + _cell(json.dumps(value, ensure_ascii=False)) + "`"


def table(rows: list[Row]) -> str:
    lines = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for row in rows:
        lines.append(f"| `{row.key}` | {row.type} | {_default(row.default)} | {_cell(row.description)} |")
    return "\n".join(lines)


def render(chart: Path = CHART) -> str:
    template = (chart / "README.tmpl.md").read_text()
    if MARKER not in template:
        raise ValueError(f"{chart / 'README.tmpl.md'} has no {MARKER}")
    chart_yaml = yaml.safe_load((chart / "Chart.yaml").read_text())
    text = template.replace(MARKER, table(parse((chart / "values.yaml").read_text())))
    text = text.replace("{{ version }}", str(chart_yaml["version"])).replace("{{ appVersion }}", str(chart_yaml["appVersion"]))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that README.md is current")
    args = parser.parse_args(argv)
    try:
        expected = render()
    except (UndocumentedValue, ValueError) as exc:
        print(f"chart_readme: {exc}", file=sys.stderr)
        return 2
    return write_or_check(CHART / "README.md", expected, check=args.check, command="python3 scripts/chart_readme.py")


if __name__ == "__main__":
    raise SystemExit(main())
