"""The serving backends: one module each (``vllm``, ``ollama``, ``onnx_engine``), one entry each here.

Suite, benchmark, dashboard, comparison table, notebooks and tests read ``BACKENDS``; nothing else names
a backend. Adding one is a ``Backend`` subclass (``helpers.backends.base``) and ``register(...)``:
tests/test_backends.py registers a fourth (``transformers serve``) in the test alone.
"""
from __future__ import annotations

from helpers.backends.base import Backend, SeedFacts
from helpers.backends.ollama import Ollama
from helpers.backends.onnx_engine import SLMEngine
from helpers.backends.vllm import VLLM

BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    BACKENDS[backend.name] = backend
    return backend


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name]


def model_overview(models) -> list[dict]:
    """One row per model card in ``models``: where it comes from, and what each backend loads of it."""
    return [{"model": c.key, "parameters": c.params, "from": c.origin, "license": c.license, "served as": c.served_name,
             "context": c.context, "template takes tools from": c.template_tools, "tool calls asked for": c.tool_format,
             **{f"{b.title} loads": b.loads(c) for b in BACKENDS.values()},
             "RAM (largest form, GB)": max(n.ram for n in c.needs.values())} for c in models]


for _backend in (VLLM(), Ollama(), SLMEngine()):
    register(_backend)

__all__ = ["BACKENDS", "Backend", "SeedFacts", "get", "model_overview", "register"]
