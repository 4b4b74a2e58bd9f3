"""Docket configuration files written by the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def toml_value(value: Any) -> str:
    """Format a Python value (bool, number, string or list of them) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(toml_value(item) for item in value) + "]"


def write_config(path: Path, rules: list[dict[str, Any]]) -> Path:
    """Write a Docket config file with only these `[[rules]]` (no embedded public registries)."""
    lines = ["[cache]", "embedded_rules = false"]
    for rule in rules:
        lines += ["", "[[rules]]", *(f"{key} = {toml_value(value)}" for key, value in rule.items())]
    path.write_text("\n".join(lines) + "\n")
    return path
