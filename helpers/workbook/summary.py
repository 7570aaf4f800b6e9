"""The small JSON record each notebook writes of what it verified.

Tests assert on this record, not on printed text. Checks are keyed by an id (what tests name), and
carry the sentence a reader sees (``text``) where it differs from the id. A failed ``check`` is
written first and then raised, so both the summary and the papermill error say what broke.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from helpers.system.paths import RUNS


class CheckFailed(AssertionError):
    """A notebook's check did not hold."""


class Summary:
    """``<out_dir>/<notebook>.summary.json``: recorded values and named checks."""

    def __init__(self, notebook: str, out_dir: str | Path | None = None, **parameters):
        self.path = Path(out_dir or RUNS) / f"{notebook}.summary.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.data = {"notebook": notebook, "parameters": parameters, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                     "checks": {}, "values": {}, "complete": False}
        self._write()

    def record(self, key: str, value) -> None:
        """Store ``value`` (JSON-able) under ``key`` (out of sight: a notebook cell that ends here shows nothing)."""
        self.data["values"][key] = value
        self._write()

    def note(self, check_id: str, condition: bool, detail: str = "", text: str | None = None, **extra) -> bool:
        """Record a check without raising (a lab's self-check); returns whether it held."""
        self.data["checks"][check_id] = {"ok": bool(condition), "detail": detail,
                                         **({"text": text} if text else {}), **extra}
        self._write()
        return bool(condition)

    def check(self, check_id: str, condition: bool, detail: str = "", text: str | None = None) -> None:
        """Record a check; one quiet line when it holds (its detail stays in the summary), ``CheckFailed`` with the
        detail when it does not."""
        if not self.note(check_id, condition, detail, text):
            raise CheckFailed(f"{text or check_id}: {detail}")
        print(f"✔ {text or check_id}")

    def grade(self, check_id: str, ok: bool, detail: str = "", answer: str = "", hard: bool = True,
              text: str | None = None) -> bool:
        """A graded answer. ``hard``: a failure stops the notebook, as ``check``; otherwise the failure is
        recorded as ``soft`` with the answer and shown as a warning (a real model's score, not a bug)."""
        self.note(check_id, ok, detail, text, answer=answer, soft=not hard)
        name = text or check_id
        if ok:
            print(f"✔ {name}")
        elif hard:
            raise CheckFailed(f"{name}: {detail or answer}")
        else:
            print(f"⚠ {name} — not met by this model (recorded as its score): {detail or answer}"[:400])
        return ok

    def finish(self) -> dict:
        """Mark the notebook as run to the end."""
        self.data["complete"] = True
        self._write()
        return self.data

    def _write(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2, default=str))


def hard_failures(summary: dict) -> dict:
    """A summary's checks that failed and were not soft: what a test must not see."""
    return {name: c["detail"] for name, c in summary["checks"].items() if not c["ok"] and not c.get("soft")}


def load(path: str | Path) -> dict:
    """A summary written by ``Summary``."""
    return json.loads(Path(path).read_text())
