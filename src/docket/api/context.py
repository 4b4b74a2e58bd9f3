"""Typed keys for objects the aiohttp application carries."""

from __future__ import annotations

from aiohttp import web

from docket.registry import Registry

REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY]
