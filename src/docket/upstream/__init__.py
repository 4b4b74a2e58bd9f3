"""HTTP client for upstream registries: authentication, retries, limits."""
