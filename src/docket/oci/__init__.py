"""Nouns of the OCI image and distribution specs: digests, references, manifests."""
