"""One client per API flavour — ``openai_api`` (vLLM, the SLM Engine) and ``ollama_api`` (Ollama, the
stand-in) — with the same methods: ``chat`` (a ``Reply`` with parsed tool calls), ``stream``, ``raw``
(the model's text before any tool parser) and ``tool_result_messages`` (a tool round trip's follow-up).
This is the only code that branches on the API; a backend names its flavour (``helpers.backends``).
"""
from __future__ import annotations

from helpers.clients import ollama_api, openai_api
from helpers.clients.reply import Reply

CLIENTS = {"openai": openai_api.Client, "ollama": ollama_api.Client}


def connect(api: str, base_url: str, model: str, timeout: float = 600):
    """The client for a server speaking ``api`` ("openai" or "ollama") at ``base_url``, asking for ``model``."""
    if api not in CLIENTS:
        raise ValueError(f"unknown API flavour {api!r}; known: {sorted(CLIENTS)}")
    return CLIENTS[api](base_url, model, timeout)


__all__ = ["CLIENTS", "Reply", "connect", "ollama_api", "openai_api"]
