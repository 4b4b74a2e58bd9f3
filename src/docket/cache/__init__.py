"""The pull-through cache: rules that map repository prefixes to upstream registries,
and the cached manifests and blobs served from them."""
