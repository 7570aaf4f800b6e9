"""Prometheus text format (what vLLM's and the engine's /metrics serve), read into numbers."""
from __future__ import annotations

import re

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)")


def parse(text: str) -> dict[str, float]:
    """Metric name -> value, summed over label sets (comments and blank lines skipped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match:
            values[match.group(1)] = values.get(match.group(1), 0.0) + float(match.group(3))
    return values


def select(values: dict[str, float], *prefixes: str) -> dict[str, float]:
    return {k: v for k, v in values.items() if k.startswith(prefixes)}
