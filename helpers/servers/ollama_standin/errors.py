"""Errors answered as Ollama answers them."""
from __future__ import annotations

from datetime import datetime, timezone


class OllamaError(Exception):
    """An error answered as Ollama does: ``{"error": message}`` with an HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


