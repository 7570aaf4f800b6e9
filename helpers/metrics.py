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


def batching(before: dict[str, float], after: dict[str, float]) -> dict:
    """What the SLM Engine's decode steps held between two scrapes of its /metrics: steps, mean sequences per
    step (continuous batching at work when above 1), and the mean wait before a request's prompt pass."""
    steps = after["slm_engine_batch_size_count"] - before.get("slm_engine_batch_size_count", 0)
    rows = after["slm_engine_batch_size_sum"] - before.get("slm_engine_batch_size_sum", 0)
    requests = after["slm_engine_requests_total"] - before.get("slm_engine_requests_total", 0)
    waited = after["slm_engine_queue_seconds_total"] - before.get("slm_engine_queue_seconds_total", 0)
    return {"decode steps": int(steps), "sequences per step": round(rows / steps, 2) if steps else None,
            "mean queue wait ms": round(1e3 * waited / requests, 1) if requests else None}
