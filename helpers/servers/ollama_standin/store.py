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


# Ollama's name rules (types/model/name.go): [host/][namespace/]model[:tag]. Every part starts with a letter, a
# digit or "_" and holds letters, digits, "_", "-" and "."; a namespace holds no ".", only a host may hold ":" (a
# port); a host has at most 350 characters, the other parts 80. Anything else is 400 "invalid model name" — so no
# name can climb out of the store ("..", "/", empty parts), as CVE-2024-37032 showed a digest could.
_PART = {"host": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,349}"), "namespace": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,79}"),
         "model": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,79}"), "tag": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,79}")}
_KINDS = {1: ("model",), 2: ("namespace", "model"), 3: ("host", "namespace", "model")}
DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")  # what a blob may be called: sha256 and 64 lower-case hex digits


def name_parts(name) -> tuple[str, ...]:
    """``name``'s parts (host, namespace, model as given) and its tag (``latest`` when none), checked as Ollama
    checks them: 400 "invalid model name" otherwise."""
    if not isinstance(name, str) or not name:
        raise OllamaError(400, "model is required")
    base, tag = name.rsplit(":", 1) if name.rfind(":") > name.rfind("/") else (name, "latest")
    parts = base.split("/")
    kinds = _KINDS.get(len(parts))
    if kinds is None or not all(_PART[kind].fullmatch(part) for kind, part in zip(kinds + ("tag",), parts + [tag])):
        raise OllamaError(400, "invalid model name")
    return (*parts, tag)


def model_name(name) -> str:
    """Ollama's name normalisation: ``phi4-mini`` -> ``phi4-mini:latest`` (400 for a name Ollama refuses)."""
    *parts, tag = name_parts(name)
    return f"{'/'.join(parts)}:{tag}"


def inside(root: Path, *parts: str) -> Path:
    """``root`` joined with ``parts``, refused (400) unless it resolves to a path inside ``root``."""
    path = root.joinpath(*parts).resolve()
    if not path.is_relative_to(root.resolve()):
        raise OllamaError(400, "invalid model name")
    return path


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

    def blob(self, digest) -> Path:
        """The file of a layer, by its digest (``sha256:<64 hex>``; 400 for anything else)."""
        match = DIGEST.fullmatch(digest) if isinstance(digest, str) else None
        if not match:
            raise OllamaError(400, f"invalid digest {str(digest)[:80]!r}")
        return inside(self.root / "blobs", f"sha256-{match.group(1)}")

    def put_bytes(self, data: bytes, media: str) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.blob(digest).exists():
            self.blob(digest).write_bytes(data)
        return {"mediaType": media, "digest": digest, "size": len(data)}

    def _manifest_path(self, name: str) -> Path:
        return inside(self.root / "manifests", *name_parts(name))

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
            if DIGEST.fullmatch(blob.name) and blob.name.replace("-", ":", 1) not in used:
                blob.unlink()


def publish(library: Path, name: str, gguf: Path, params: dict | None = None, system: str = "") -> Path:
    """Put a GGUF into the local library as ``name`` (``repo:tag``), for ``/api/pull`` to fetch."""
    folder = inside(library, *name_parts(name))
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
