"""The graded task suite, run against every backend through its own API.

Tasks are phi4-nano's held-out curriculum (math, word problems, coding, tool calls,
refusing non-matching tools, answering from a tool's result) plus the seed's prompts;
``helpers.grading`` grades each answer (final number; code run in a sandboxed
subprocess against hidden tests; tool calls checked against the tool's JSON Schema
and the expected values). Each backend's answer is brought back to Phi-4-mini's text
form (content + ``<|tool_call|>[...]``) before grading, so one grader serves all.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

from helpers import chat_format, curriculum, grading

MAX_TOKENS = {"coding": 96, "seed": 160}  # as phi4-nano's own evaluation


def suite(per_family: int = 10) -> list[curriculum.Task]:
    """``per_family`` held-out tasks of every family, then the seed's prompts."""
    return curriculum.heldout_set(per_family) + curriculum.seed_tasks()


def openai_messages(messages: list[dict]) -> list[dict]:
    """Curriculum messages in OpenAI's form: tool calls with ids and JSON-string arguments, tool results by id."""
    out, ids = [], []
    for m in messages:
        if m.get("tool_calls"):
            ids = [f"call_{len(out)}_{i}" for i in range(len(m["tool_calls"]))]
            out.append({"role": "assistant", "content": m.get("content") or "", "tool_calls": [
                {"id": i, "type": "function", "function": {"name": c["function"]["name"], "arguments":
                 c["function"]["arguments"] if isinstance(c["function"]["arguments"], str)
                 else json.dumps(c["function"]["arguments"])}} for i, c in zip(ids, m["tool_calls"])]})
        elif m["role"] == "tool":
            out.append({"role": "tool", "content": m["content"], "tool_call_id": ids.pop(0) if ids else "call_0"})
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


def ollama_messages(messages: list[dict]) -> list[dict]:
    """Curriculum messages in Ollama's form: tool-call arguments as objects."""
    out = []
    for m in messages:
        entry = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("tool_calls"):
            entry["tool_calls"] = [{"function": {"name": c["function"]["name"], "arguments":
                                    json.loads(c["function"]["arguments"]) if isinstance(c["function"]["arguments"], str)
                                    else c["function"]["arguments"]}} for c in m["tool_calls"]]
        out.append(entry)
    return out


class OpenAIBackend:
    """A backend behind an OpenAI-compatible API (vLLM, the SLM Engine)."""

    def __init__(self, base_url: str, model: str):
        from helpers import openai_chat
        self.client, self.model = openai_chat.client(base_url), model

    def complete(self, task) -> str:
        kwargs = {"tools": task.tools, "tool_choice": "auto"} if task.tools else {}
        reply = self.client.chat.completions.create(model=self.model, messages=openai_messages(task.messages),
                                                    max_tokens=MAX_TOKENS.get(task.family, 48), temperature=0, **kwargs)
        message = reply.choices[0].message
        calls = [{"name": c.function.name, "arguments": json.loads(c.function.arguments or "{}")}
                 for c in message.tool_calls or []]
        return (message.content or "") + (chat_format.format_tool_calls(calls) if calls else "")


class OllamaBackend:
    """A backend behind Ollama's native API (Ollama, or the lab's stand-in), through the ``ollama`` client."""

    def __init__(self, base_url: str, model: str):
        import ollama
        self.client, self.model = ollama.Client(host=base_url, timeout=300), model

    def complete(self, task) -> str:
        reply = self.client.chat(model=self.model, messages=ollama_messages(task.messages), tools=task.tools or None,
                                 options={"temperature": 0, "num_predict": MAX_TOKENS.get(task.family, 48)})
        calls = [{"name": c.function.name, "arguments": dict(c.function.arguments)}
                 for c in reply.message.tool_calls or []]
        return (reply.message.content or "") + (chat_format.format_tool_calls(calls) if calls else "")


class TransformersBackend:
    """The reference: the model in PyTorch, greedy, one task at a time (as a server would see it)."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def complete(self, task) -> str:
        from helpers import phi4_nano
        return phi4_nano.generate(self.model, self.tokenizer, [(task.messages, task.tools)],
                                  MAX_TOKENS.get(task.family, 48))[0]


@dataclass
class Result:
    family: str
    key: str
    ok: bool
    why: str
    answer: str
    seconds: float


def run(backend, tasks: list, progress: bool = True, desc: str = "suite") -> list[Result]:
    """Every task through ``backend.complete``, graded."""
    from tqdm.auto import tqdm

    results = []
    for task in tqdm(tasks, desc=desc, disable=not progress):
        start = time.perf_counter()
        try:
            answer = backend.complete(task)
            ok, why = grading.grade(task, answer)
        except Exception as err:  # an API error is a failed task, reported with its reason
            answer, ok, why = "", False, f"{type(err).__name__}: {str(err)[:200]}"
        results.append(Result(task.family, task.key, ok, why, answer, time.perf_counter() - start))
    return results


def accuracy(results: list[Result]) -> dict[str, float]:
    """Share of passed tasks per family (and ``all``)."""
    families = sorted({r.family for r in results})
    table = {f: round(sum(r.ok for r in results if r.family == f) / sum(r.family == f for r in results), 3)
             for f in families}
    table["all"] = round(sum(r.ok for r in results) / len(results), 3)
    return table


def against_reference(by_backend: dict[str, list[Result]], reference: str = "transformers") -> dict[str, dict]:
    """Per backend: accuracy gap to the reference per family, and how many answers differ from it."""
    ref = {r.key: r for r in by_backend[reference]}
    out = {}
    for name, results in by_backend.items():
        acc, ref_acc = accuracy(results), accuracy(by_backend[reference])
        out[name] = {"lower_than_reference": {f: (acc[f], ref_acc[f]) for f in acc if acc[f] < ref_acc[f]},
                     "answers_differing": sum(r.answer.strip() != ref[r.key].answer.strip() for r in results)}
    return out
