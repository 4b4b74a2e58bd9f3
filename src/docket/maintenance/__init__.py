"""Keeping the store in bounds: access tracking, LRU eviction of cached content, garbage collection."""
