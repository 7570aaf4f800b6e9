"""An HTTP request as a learner would type it (a ``curl`` line), and a JSON body shortened for reading."""
from __future__ import annotations

import json
import shlex


def curl(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> str:
    """The ``curl`` command line that sends ``body`` as JSON to ``url`` (what a client library does for you)."""
    argv = ["curl", "-s"] + (["-X", method] if (method, body is None) not in (("GET", True), ("POST", False)) else [])
    argv.append(url)
    for key, value in (headers or {}).items():
        argv += ["-H", f"{key}: {value}"]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    return shlex.join(argv)


def preview(data, max_lines: int = 25, max_string: int = 160) -> str:
    """``data`` as indented JSON with long strings cut (their length said) and at most ``max_lines`` lines."""
    def cut(value):
        if isinstance(value, str) and len(value) > max_string:
            return value[:max_string] + f"… ({len(value)} characters)"
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cut(v) for v in value]
        return value

    lines = json.dumps(cut(data), indent=2, ensure_ascii=False).splitlines()
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"… ({len(lines) - max_lines} more lines)"]
    return "\n".join(lines)


def preview_text(text: str, max_lines: int = 25) -> str:
    """``text`` with at most ``max_lines`` lines, the rest counted."""
    lines = text.splitlines()
    return "\n".join(lines[:max_lines] + ([f"… ({len(lines) - max_lines} more lines)"] if len(lines) > max_lines else []))
