"""Where the lab keeps things: the repo, its runs/ folder and the content-keyed cache."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNS = REPO / "runs"


def cache_dir() -> Path:
    """The lab's cache root: ``$SLM_LAB_CACHE`` or ``~/.cache/slm-deploy-lab``."""
    root = Path(os.environ.get("SLM_LAB_CACHE", Path.home() / ".cache" / "slm-deploy-lab"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MB blocks (GGUFs are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def content_key(recipe: dict, files: list[Path] = ()) -> str:
    """A short hash of a JSON-able recipe and the text of the files that implement it."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    for path in files:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def locked(path: Path):
    """An exclusive lock on ``path`` (a lock file) for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_once(final: Path, build, done: str) -> Path:
    """``final``, made by ``build(tmp_folder)`` unless it already holds ``done``.

    Concurrent callers wait on a lock; only a finished build gets the final name,
    so an interrupted one leaves nothing that looks complete.
    """
    if not (final / done).exists():
        with locked(final.parent / ".lock"):
            if not (final / done).exists():
                tmp = final.parent / f".{final.name}.building"
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
                build(tmp)
                tmp.rename(final)
    (final / ".last-used").touch()  # what `make clean-cache` reads (helpers.system.cache)
    return final
