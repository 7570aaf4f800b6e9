"""What pulling an image from Docker Hub downloads: the compressed size of its layers for this machine's platform,
read from the registry's manifests (the Registry HTTP API v2), before anything is pulled."""
from __future__ import annotations

import requests

REGISTRY = "https://registry-1.docker.io/v2"
AUTH = "https://auth.docker.io/token"
ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])
PLATFORM_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _repository_and_tag(image: str) -> tuple[str, str]:
    name, _, tag = image.partition(":")
    return (name if "/" in name else f"library/{name}"), tag or "latest"


def download_size(image: str, machine: str, timeout: float = 10.0) -> int | None:
    """Bytes ``docker pull image`` downloads on a ``machine`` (x86_64, aarch64) host: its layers and config for
    linux/<arch>; None where the registry does not answer or publishes no such platform."""
    repository, tag = _repository_and_tag(image)
    try:
        token = requests.get(AUTH, params={"service": "registry.docker.io", "scope": f"repository:{repository}:pull"},
                             timeout=timeout).json()["token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
        manifest = requests.get(f"{REGISTRY}/{repository}/manifests/{tag}", headers=headers, timeout=timeout).json()
        if "manifests" in manifest:  # an index: one manifest per platform
            arch = PLATFORM_ARCH.get(machine, machine)
            entry = next((m for m in manifest["manifests"] if m.get("platform", {}).get("os") == "linux"
                          and m["platform"].get("architecture") == arch), None)
            if entry is None:
                return None
            manifest = requests.get(f"{REGISTRY}/{repository}/manifests/{entry['digest']}", headers=headers,
                                    timeout=timeout).json()
        return manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    except (requests.RequestException, KeyError, ValueError):
        return None
