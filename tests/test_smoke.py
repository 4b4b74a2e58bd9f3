"""The smallest end-to-end check: push an image and read it back."""

import httpx

from tests.support.oci import image, push_manifest


def test_push_and_pull_image(client: httpx.Client, repo: str) -> None:
    manifest = image(layers=2)
    push_manifest(client, repo, manifest, "latest")

    response = client.get(f"/v2/{repo}/manifests/latest", headers={"Accept": manifest.media_type})
    assert response.status_code == 200
    assert response.content == manifest.data
    assert response.headers["Docker-Content-Digest"] == manifest.digest
    for blob in manifest.blobs:
        blob_response = client.get(f"/v2/{repo}/blobs/{blob.digest}")
        assert blob_response.status_code == 200
        assert blob_response.content == blob.data
