"""`docket status`: what a running Docket stores and how its upstreams are doing."""

from __future__ import annotations

import aiohttp

from docket.commands.http import get_json


async def status(server: str) -> str:
    async with aiohttp.ClientSession() as session:
        result = await get_json(session, f"{server.rstrip('/')}/_docket/status")
    store = result["store"]
    objects = store["objects"]
    ratio = result.get("hit_ratio")
    lines = [
        f"store: {store['bytes'] / 1048576:.1f} MiB in {objects.get('blobs', 0)} blobs; "
        f"{objects.get('manifests', 0)} manifests, {objects.get('tags', 0)} tags, "
        f"{objects.get('repositories', 0)} repositories, {objects.get('uploads', 0)} uploads in progress",
        f"cache hit ratio since start: {'n/a' if ratio is None else f'{ratio:.1%}'}; "
        f"blob fills in progress: {result.get('fills_in_progress', 0):.0f}",
    ]
    upstreams = result.get("upstreams", [])
    if upstreams:
        lines.append("upstreams:")
        for upstream in upstreams:
            state = upstream["last_status"] or "not contacted yet"
            line = f"  {upstream['rule']:<20} {upstream['url']:<40} last status {state}"
            if upstream.get("last_error"):
                line += f"; last error at {upstream['last_failure']}: {upstream['last_error']}"
            lines.append(line)
    problems = result.get("recent_problems", [])
    lines.append("recent problems:" if problems else "recent problems: none")
    lines += [
        f"  {problem['time']} {problem['level']} {problem['logger']}: {problem['message']}" for problem in problems
    ]
    return "\n".join(lines)
