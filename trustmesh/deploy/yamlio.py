"""Deterministic YAML output: block style, insertion order, literal blocks for scripts, no aliases."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """SafeDumper that never writes anchors and indents list items under their key."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(document: Any) -> str:
    """One YAML document as text."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True)


def dump_all(documents: Iterable[Any], *, header: str = "") -> str:
    """Several documents separated by ``---``, after an optional comment header."""
    parts = [dump(doc) for doc in documents]
    body = "---\n" + "---\n".join(parts)
    return header + body
