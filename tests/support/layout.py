"""Read OCI image layouts and push their content over the registry API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MANIFEST_TYPES = INDEX_TYPES | {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
REF_NAME = "org.opencontainers.image.ref.name"


def push_blob_data(client: httpx.Client, repository: str, digest: str, data: bytes) -> None:
    """Push a blob with a single POST, finishing with a PUT where the registry opened a session instead.

    CNCF distribution 2.8 ignores the body of `POST ?digest=` and responds 202.
    """
    response = client.post(f"/v2/{repository}/blobs/uploads/", params={"digest": digest}, content=data)
    if response.status_code == 202:
        location = httpx.URL(response.headers["Location"])
        response = client.put(location.copy_merge_params({"digest": digest}), content=data)
    assert response.status_code == 201, f"blob {digest}: {response.status_code} {response.text}"


class OciLayout:
    def __init__(self, path: Path) -> None:
        self.path = path

    def index(self) -> dict[str, Any]:
        return json.loads((self.path / "index.json").read_text())

    def tags(self) -> dict[str, dict[str, Any]]:
        """Map each tag in index.json to its descriptor."""
        return {
            entry["annotations"][REF_NAME]: entry
            for entry in self.index()["manifests"]
            if REF_NAME in entry.get("annotations", {})
        }

    def blob_path(self, digest: str) -> Path:
        algorithm, encoded = digest.split(":", 1)
        return self.path / "blobs" / algorithm / encoded

    def read(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def reachable(self, digest: str) -> set[str]:
        """Digests of a manifest and everything it references that the layout holds."""
        seen: set[str] = set()
        pending = [digest]
        while pending:
            current = pending.pop()
            if current in seen or not self.has(current):
                continue
            seen.add(current)
            document = json.loads(self.read(current)) if self._is_manifest(current) else None
            if document is None:
                continue
            for key in ("manifests", "layers", "blobs"):
                pending.extend(entry["digest"] for entry in document.get(key) or [])
            if "config" in document:
                pending.append(document["config"]["digest"])
        return seen

    def _is_manifest(self, digest: str) -> bool:
        data = self.read(digest)
        if not data.startswith(b"{"):
            return False
        try:
            document = json.loads(data)
        except ValueError:
            return False
        return (
            isinstance(document, dict)
            and document.get("schemaVersion") == 2
            and ("manifests" in document or "layers" in document or "config" in document)
        )

    def push(self, client: httpx.Client, repository: str, descriptor: dict[str, Any], tag: str | None = None) -> None:
        """Push a manifest or index with everything it references, children first."""
        digest = descriptor["digest"]
        data = self.read(digest)
        document = json.loads(data)
        for child in document.get("manifests") or []:
            if self.has(child["digest"]):
                self.push(client, repository, child)
        blobs = list(document.get("layers") or []) + list(document.get("blobs") or [])
        if "config" in document:
            blobs.append(document["config"])
        for blob in blobs:
            if self.has(blob["digest"]):
                push_blob_data(client, repository, blob["digest"], self.read(blob["digest"]))
        response = client.put(
            f"/v2/{repository}/manifests/{tag or digest}",
            content=data,
            headers={"Content-Type": descriptor["mediaType"]},
        )
        assert response.status_code == 201, f"{tag or digest}: {response.status_code} {response.text}"
