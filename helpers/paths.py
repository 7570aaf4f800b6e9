"""Where the lab keeps things: the repo, its runs/ folder and the content-keyed cache."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "runs"


def cache_dir() -> Path:
    """The lab's cache root: ``$SLM_LAB_CACHE`` or ``~/.cache/slm-deploy-lab``."""
    root = Path(os.environ.get("SLM_LAB_CACHE", Path.home() / ".cache" / "slm-deploy-lab"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def content_key(recipe: dict, files: list[Path] = ()) -> str:
    """A short hash of a JSON-able recipe and the text of the files that implement it."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    for path in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]
