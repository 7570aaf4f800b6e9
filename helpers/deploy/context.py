"""What an image's build context holds of this repository: a module's source files and those of every
``helpers`` module it imports (at the top or inside a function), with their packages' ``__init__.py``."""
from __future__ import annotations

import ast
from pathlib import Path

from helpers.system.paths import REPO


def module_path(name: str) -> Path | None:
    """The file of module ``name`` (``helpers.x.y``) in this repository, or None when there is none."""
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imports_of(path: Path) -> set[str]:
    """The ``helpers`` modules ``path`` imports (``from helpers.x import y`` counts ``helpers.x.y`` when it is a
    module, else ``helpers.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "helpers"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "helpers":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if module_path(sub) else node.module)
    return found


def source_files(*modules: str) -> dict[str, Path]:
    """Repository path -> file for ``modules`` and everything of ``helpers`` they import, transitively."""
    files, todo = {}, list(modules)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # the module and the packages above it
            path = module_path(".".join(parts[:depth]))
            if path is None:
                raise ValueError(f"no module {'.'.join(parts[:depth])} in {REPO}")
            key = str(path.relative_to(REPO))
            if key not in files:
                files[key] = path
                todo += sorted(imports_of(path))
    return files
