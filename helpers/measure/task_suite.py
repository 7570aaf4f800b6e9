"""The graded task suite, run against every backend through its own API.

Tasks are phi4-nano's held-out curriculum (math, word problems, coding, tool calls,
refusing non-matching tools, answering from a tool's result) plus the seed's prompts, as
many as the model card's budget allows; ``helpers.tasks.grading`` grades each answer (the number
in its conclusion; code run in a sandboxed subprocess against hidden tests; tool calls
checked against the tool's JSON Schema and the expected values). A backend's parsed tool
calls are written back as text (``<|tool_call|>[...]``) before grading, so one grader serves
all; the parsed calls are kept beside the answer.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from helpers.clients import ollama_api
from helpers.formats import tool_formats
from helpers.tasks import curriculum, grading


def suite(card) -> list[curriculum.Task]:
    """The card's share of held-out tasks of every family, then the seed's prompts it lists."""
    keys = card.budget.seed_keys
    return (curriculum.heldout_set(card.budget.per_family)
            + [t for t in curriculum.seed_tasks() if keys is None or t.key in keys])


def _as_text(content: str | None, calls: list[dict]) -> str:
    """An answer with its parsed tool calls written back in one text form, for the one grader."""
    return (content or "") + (tool_formats.to_text(calls) if calls else "")


class Served:
    """A server answering the suite through its backend's own client (``helpers.clients``)."""

    def __init__(self, client, card):
        self.client, self.card = client, card

    def complete(self, task) -> tuple[str, list[dict]]:
        reply = self.client.chat(task.messages, task.tools, max_tokens=self.card.budget.tokens(task.family))
        calls = [{"name": c["name"], "arguments": c["arguments"]} for c in reply.tool_calls]
        return _as_text(reply.content, calls), calls


class TransformersBackend:
    """The reference: the model in transformers, greedy, one task at a time (as a server would see it)."""

    def __init__(self, model, tokenizer, card):
        self.model, self.tokenizer, self.card = model, tokenizer, card

    @classmethod
    def load(cls, card) -> "TransformersBackend":
        """``card``'s model loaded in transformers (the card's reference dtype)."""
        from helpers.measure import reference

        return cls(*reference.load(card), card)

    def complete(self, task) -> tuple[str, list[dict]]:
        """The greedy answer to the conversation the servers see (tool-call arguments as objects, as every
        server turns them before its template), tool calls parsed and written back as the servers' are."""
        from helpers.measure import reference

        text = reference.chat(self.model, self.tokenizer, ollama_api.messages(task.messages), task.tools,
                              self.card.budget.tokens(task.family))
        try:
            parsed = tool_formats.parse(text, grading._names(task.tools)) if task.tools else None
        except ValueError:  # a malformed call is graded as such from the text
            parsed = None
        if parsed and parsed.calls:
            return _as_text(parsed.content, parsed.calls), parsed.calls
        return text, []


@dataclass
class Result:
    family: str
    key: str
    ok: bool
    why: str
    answer: str
    seconds: float
    tool_calls: list = field(default_factory=list)  # as the backend parsed them


def run(backend, tasks: list, progress: bool = True, desc: str = "suite") -> list[Result]:
    """Every task through ``backend.complete``, graded."""
    from tqdm.auto import tqdm

    results = []
    for task in tqdm(tasks, desc=desc, disable=not progress):
        start = time.perf_counter()
        calls = []
        try:
            answer, calls = backend.complete(task)
            ok, why = grading.grade(task, answer)
            ok = bool(ok)  # code not graded (no sandbox here) counts as not passed; ``why`` says so
        except Exception as err:  # an API error is a failed task, reported with its reason
            answer, ok, why = "", False, f"{type(err).__name__}: {str(err)[:200]}"
        results.append(Result(task.family, task.key, ok, why, answer, time.perf_counter() - start, calls))
    return results


def accuracy(results: list[Result]) -> dict[str, float]:
    """Share of passed tasks per family (and ``all``)."""
    families = sorted({r.family for r in results})
    table = {f: round(sum(r.ok for r in results if r.family == f) / sum(r.family == f for r in results), 3)
             for f in families}
    table["all"] = round(sum(r.ok for r in results) / len(results), 3)
    return table


def against_reference(by_backend: dict[str, list[Result]], reference: str = "transformers") -> dict[str, dict]:
    """Per backend: accuracy gap to the reference per family, and how many answers differ from it
    (``agreement``: the share of tasks answered exactly as the reference did)."""
    ref = {r.key: r for r in by_backend[reference]}
    out = {}
    for name, results in by_backend.items():
        if name == reference:
            continue
        acc, ref_acc = accuracy(results), accuracy(by_backend[reference])
        differing = [r.key for r in results if r.answer.strip() != ref[r.key].answer.strip()]
        out[name] = {"lower_than_reference": {f: (acc[f], ref_acc[f]) for f in acc if acc[f] < ref_acc[f]},
                     "answers_differing": len(differing), "differing": differing,
                     "agreement": round(1 - len(differing) / len(results), 3)}
    return out


def records(results: list[Result]) -> list[dict]:
    """The results as JSON rows for a summary: answer, score, tool calls, time."""
    return [{"key": r.key, "family": r.family, "ok": r.ok, "why": r.why, "answer": r.answer,
             "tool_calls": r.tool_calls, "seconds": round(r.seconds, 2)} for r in results]
