"""Models on disk in Ollama's layout, and the local library the stand-in pulls from instead of ollama.com."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from helpers.servers.ollama_standin.errors import OllamaError

MEDIA = {"model": "application/vnd.ollama.image.model", "system": "application/vnd.ollama.image.system",
         "params": "application/vnd.ollama.image.params", "template": "application/vnd.ollama.image.template"}


def model_name(name: str) -> str:
    """Ollama's name normalisation: ``phi4-mini`` -> ``phi4-mini:latest``."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][\w.\-/]*(:[\w.\-]+)?", name or ""):
        raise OllamaError(400, f'invalid model name "{name}"' if name else "model is required")
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class Model:
    """A stored model: its manifest resolved to a GGUF file, system prompt, parameters and template."""

    name: str
    digest: str
    gguf: Path
    size: int
    modified_at: str
    system: str = ""
    params: dict = field(default_factory=dict)
    template: str = ""
    parent: str = ""


class Store:
    """Models on disk in Ollama's layout: ``blobs/sha256-<hex>`` and ``manifests/<name>/<tag>``."""

    def __init__(self, root: Path):
        self.root = root
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        (root / "manifests").mkdir(parents=True, exist_ok=True)

    def blob(self, digest: str) -> Path:
        return self.root / "blobs" / digest.replace(":", "-")

    def put_bytes(self, data: bytes, media: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.blob(digest).exists():
            self.blob(digest).write_bytes(data)
        return {"mediaType": media, "digest": digest, "size": len(data)}

    def _manifest_path(self, name: str) -> Path:
        repo, tag = model_name(name).rsplit(":", 1)
        return self.root / "manifests" / repo / tag

    def manifest(self, name: str) -> dict | None:
        path = self._manifest_path(name)
        return json.loads(path.read_text()) if path.exists() else None

    def write_manifest(self, name: str, layers: list[dict]) -> None:
        config = self.put_bytes(json.dumps({"model_format": "gguf", "layers": [l["digest"] for l in layers]}).encode(),
                                "application/vnd.docker.container.image.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": config, "layers": layers}
        path = self._manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest))

    def names(self) -> list[str]:
        return sorted(f"{p.parent.relative_to(self.root / 'manifests')}:{p.name}"
                      for p in (self.root / "manifests").glob("**/*") if p.is_file())

    def model(self, name: str) -> Model:
        name = model_name(name)
        manifest = self.manifest(name)
        if manifest is None:
            raise OllamaError(404, f'model "{name}" not found, try pulling it first')
        layers = {layer["mediaType"]: layer for layer in manifest["layers"]}
        text = {kind: self.blob(layers[media]["digest"]).read_text() for kind, media in MEDIA.items()
                if kind != "model" and media in layers}
        path = self._manifest_path(name)
        raw = path.read_bytes()
        gguf = self.blob(layers[MEDIA["model"]]["digest"])
        return Model(name=name, digest=hashlib.sha256(raw).hexdigest(), gguf=gguf,
                     size=sum(layer["size"] for layer in manifest["layers"]),
                     modified_at=datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(),
                     system=text.get("system", ""), params=json.loads(text.get("params", "{}")),
                     template=text.get("template", ""), parent=manifest.get("parent", ""))

    def delete(self, name: str) -> None:
        path = self._manifest_path(name)
        if not path.exists():
            raise OllamaError(404, f"model '{model_name(name)}' not found")
        path.unlink()
        used = set()
        for other in self.names():  # Ollama prunes the layers no manifest uses any more
            manifest = self.manifest(other)
            used |= {layer["digest"] for layer in manifest["layers"]} | {manifest["config"]["digest"]}
        for blob in (self.root / "blobs").iterdir():
            if blob.name.replace("-", ":", 1) not in used:
                blob.unlink()


def publish(library: Path, name: str, gguf: Path, params: dict | None = None, system: str = "") -> Path:
    """Put a GGUF into the local library as ``name`` (``repo:tag``), for ``/api/pull`` to fetch."""
    repo, tag = model_name(name).rsplit(":", 1)
    folder = library / repo / tag
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.gguf"
    if not target.exists() or not target.samefile(gguf):
        target.unlink(missing_ok=True)
        try:  # a hard link: no second copy, and unlike a symlink it resolves inside a container's mount
            os.link(gguf, target)
        except OSError:  # another filesystem
            shutil.copy2(gguf, target)
    if params:
        (folder / "params.json").write_text(json.dumps(params))
    if system:
        (folder / "system.txt").write_text(system)
    return folder
