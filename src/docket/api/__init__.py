"""The OCI Distribution HTTP API on aiohttp."""
