"""`docket inspect`: print the cached tree of an image."""

from __future__ import annotations

from typing import Any

import aiohttp

from docket.commands.http import get_json


async def inspect(server: str, reference: str) -> str:
    async with aiohttp.ClientSession() as session:
        result = await get_json(session, f"{server.rstrip('/')}/_docket/inspect", params={"reference": reference})
    lines = [result["reference"]]
    if result.get("rule"):
        lines[0] += f"  (rule {result['rule']}, upstream {result['upstream']})"
    _render(result["manifest"], lines, "  ")
    return "\n".join(lines)


def _format_size(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} B"


def _render(node: dict[str, Any], lines: list[str], indent: str) -> None:
    if not node.get("cached", True):
        lines.append(f"{indent}{node['digest']}  (not cached)")
        return
    if "tag" in node:
        lines.append(
            f"{indent}cosign tag {node['tag']} -> {node['digest']}  "
            f"synced {node.get('syncedAt') or 'never'}{'' if node.get('contentSynced') else ', content not synced'}"
        )
        return
    parts = [node["digest"], node.get("mediaType", "")]
    if node.get("platform"):
        platform = node["platform"]
        parts.insert(0, "/".join(str(platform[key]) for key in ("os", "architecture", "variant") if platform.get(key)))
    if node.get("artifactType") and node.get("discoveredVia"):
        parts.append(f"artifactType {node['artifactType']}")
    parts.append(_format_size(node.get("size")))
    if node.get("discoveredVia"):
        parts.append(f"via {node['discoveredVia']}")
    else:
        parts.append(f"from {node.get('source')}")
    if node.get("syncedAt"):
        parts.append(f"synced {node['syncedAt']}")
    if node.get("contentSynced") is False:
        parts.append("content not synced")
    lines.append(indent + "  ".join(part for part in parts if part))
    if node.get("policy"):
        lines.append(f"{indent}  policy: {node['policy']}")
    for child in node.get("children", []):
        _render(child, lines, indent + "  ")
    referrers = node.get("referrers", [])
    if referrers:
        lines.append(f"{indent}  referrers:")
        for referrer in referrers:
            _render(referrer, lines, indent + "    ")
