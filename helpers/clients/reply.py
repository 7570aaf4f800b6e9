"""What every client's chat returns, whatever the API."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Reply:
    """One chat completion with its timing; tool calls as ``{"id", "name", "arguments": dict}``."""

    content: str | None
    tool_calls: list[dict]
    finish_reason: str
    completion_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0
