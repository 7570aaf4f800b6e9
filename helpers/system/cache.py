"""The lab's cache (``~/.cache/slm-deploy-lab``, or ``$SLM_LAB_CACHE``): what is in it, how big, when last used,
and what is stale — ``slm-lab-cache`` (``make clean-cache``) lists it and removes the stale entries.

An entry is a folder under one of the cache's kinds (weights, onnx, gguf, venvs, wheels, …), named by the key of
what it was made from. Stale: a build that never finished (``.<name>.building``), an entry not used for ``days``
days, a virtualenv or wheelhouse that a newer one of the same name has replaced (its recipe changed), and logs of
backends older than ``days``. Nothing outside the cache is touched; nothing in use is stale.
"""
from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from helpers.system.paths import cache_dir

USED = ".last-used"  # touched whenever an entry is used (paths.build_once, venvs)
SUPERSEDED_KINDS = ("venvs", "wheels")  # entries named <name>-<key>: a newer key of the same name replaces the older


def touch_used(folder: Path) -> None:
    """Mark ``folder`` (a cache entry) as used now."""
    try:
        (folder / USED).touch()
    except OSError:  # a read-only cache is still usable
        pass


@dataclass
class Entry:
    kind: str
    path: Path
    bytes: int
    used: float  # when it was last used (or made), seconds since the epoch

    @property
    def name(self) -> str:
        return self.path.name


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def entries(root: Path | None = None) -> list[Entry]:
    """Every entry of every kind under the cache ``root``."""
    root = root or cache_dir()
    found = []
    for kind in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(kind.iterdir()):
            if path.name in (".lock", USED):
                continue
            marker = path / USED
            used = (marker if marker.exists() else path).stat().st_mtime
            found.append(Entry(kind.name, path, _size(path), used))
    return found


def stale(found: list[Entry], days: float = 30, now: float | None = None) -> dict[Path, str]:
    """The stale entries, each with why."""
    now, out = now or time.time(), {}
    newest: dict[tuple[str, str], float] = {}
    def family(entry: Entry) -> tuple[str, str]:  # venvs/vllm-cpu-<key> and its .log: ("venvs", "vllm-cpu")
        return entry.kind, entry.name.split(".")[0].rsplit("-", 1)[0]

    for entry in found:
        if entry.kind in SUPERSEDED_KINDS:
            newest[family(entry)] = max(newest.get(family(entry), 0.0), entry.used)
    for entry in found:
        age = (now - entry.used) / 86400
        if entry.name.startswith(".") and entry.name.endswith(".building"):
            out[entry.path] = "a build that never finished"
        elif entry.kind in SUPERSEDED_KINDS and entry.used < newest[family(entry)] - 60:
            out[entry.path] = "replaced by a newer one of the same name"
        elif entry.kind == "processes" and entry.name.endswith(".log") and age > days:
            out[entry.path] = f"a backend's log, {age:.0f} days old"
        elif entry.kind != "processes" and age > days:
            out[entry.path] = f"not used for {age:.0f} days"
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The lab's cache: sizes, last use, and its stale entries.")
    parser.add_argument("--remove-stale", action="store_true", help="remove the stale entries")
    parser.add_argument("--days", type=float, default=30, help="an entry unused this long is stale (default 30)")
    parser.add_argument("--all", action="store_true", help="remove the whole cache (asks first unless --yes)")
    parser.add_argument("--yes", action="store_true", help="do not ask")
    args = parser.parse_args(argv)
    root = cache_dir()
    found = entries(root)
    old = stale(found, args.days)
    kinds: dict[str, int] = {}
    for entry in found:
        kinds[entry.kind] = kinds.get(entry.kind, 0) + entry.bytes
    print(f"{root}: {_mb(sum(kinds.values()))}")
    for kind, size in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<20} {_mb(size):>10}")
        for entry in sorted((e for e in found if e.kind == kind), key=lambda e: -e.bytes)[:8]:
            why = old.get(entry.path)
            used = time.strftime("%Y-%m-%d", time.localtime(entry.used))
            print(f"    {entry.name[:44]:<44} {_mb(entry.bytes):>10}  used {used}" + (f"  STALE: {why}" if why else ""))
    if args.all:
        if args.yes or input(f"remove all of {root} ({_mb(sum(kinds.values()))})? [y/N] ").strip().lower() == "y":
            for entry in found:
                _remove(entry.path)
            print("removed")
        return
    freed = sum(e.bytes for e in found if e.path in old)
    if not old:
        print("nothing stale")
    elif args.remove_stale:
        for path in old:
            _remove(path)
        print(f"removed {len(old)} stale entries ({_mb(freed)})")
    else:
        print(f"{len(old)} stale entries ({_mb(freed)}): `make clean-cache` removes them")
