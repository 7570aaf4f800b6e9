"""What every client's chat returns, whatever the API; and a watch that says when an answer makes no progress."""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

PATIENCE_S = 60.0  # seconds without a token before a client says so (and again every as many seconds)


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


class NoProgressWatch:
    """While a request runs: after ``patience`` seconds without an answer (or, streamed, without a new piece)
    print that it is still waiting and why it may be — instead of waiting silently. ``progress()`` on each piece.

        with NoProgressWatch("vLLM at http://127.0.0.1:8000") as watch:
            for chunk in stream: watch.progress()
    """

    def __init__(self, what: str, patience: float = PATIENCE_S, out=None):
        self.what, self.patience, self.out = what, patience, out or sys.stderr
        self.last, self.started = time.monotonic(), time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def progress(self) -> None:
        self.last = time.monotonic()

    def _watch(self) -> None:
        while not self.done.wait(self.patience / 4):
            idle = time.monotonic() - self.last
            if idle >= self.patience:
                print(f"… {self.what}: no new token for {idle:.0f} s ({time.monotonic() - self.started:.0f} s in all) "
                      "— still waiting. A server whose cores another program holds slows to a crawl: see "
                      "docs/memory.md (Cores).", file=self.out, flush=True)
                self.last = time.monotonic()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
