"""Automatic graders for math answers, generated code and tool calls.

They accept a correct answer in the words a real model uses: the expected number anywhere in
the answer's concluding line (rounded as written, hours given as hours and minutes), the
function the model wrote under a related name, a Fibonacci function that returns the sequence
(its documented contract) instead of one number, yes/no in other words.

Generated code never runs in the kernel, nor unconfined: ``grade_code`` runs it in a sandbox
(``helpers.tasks.sandbox``: no network, nothing of the learner's files or environment, resource
limits, a timeout) against hidden tests, or reports it "not graded" where no sandbox works.
"""
from __future__ import annotations

import json
import re

from helpers.formats.chat_format import strip_special
from helpers.formats.tool_formats import parse_tool_calls
from helpers.tasks import sandbox

_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_CODE_RE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|$)", re.S)
_HOURS_MINUTES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:hours?|hrs?|h)\b[\s,]*(?:and\s*)?(\d+(?:\.\d+)?)\s*(?:minutes?|mins?|m)\b")
_MINUTES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:minutes?|mins?)\b")


def final_number(text: str) -> float | None:
    """The last number in ``text`` (the answer's final figure), or None."""
    numbers = _NUMBER_RE.findall(text.replace(",", ""))
    return float(numbers[-1]) if numbers else None


def conclusion(text: str) -> str:
    """The answer's concluding line: its last non-empty line (LaTeX and Markdown emphasis removed)."""
    lines = [line for line in strip_special(text).replace(",", "").splitlines() if re.search(r"\d", line)]
    return re.sub(r"[{}*$]", " ", lines[-1]) if lines else ""


def _matches(written: str, expected: float) -> bool:
    """``written`` (a number as the model wrote it) is ``expected``, exactly or rounded to the digits written
    (within 1 %: "78.5" for 78.54 passes, "2" for 2.4 does not)."""
    got = float(written)
    decimals = len(written.split(".")[1]) if "." in written else 0
    return abs(got - expected) <= max(1e-6 * max(1.0, abs(expected)),
                                      min(0.5 * 10 ** -decimals, 0.01 * abs(expected)))


_MARKED = re.compile(r"(?:answer is|boxed)\W*(-?\d+(?:\.\d+)?)", re.I)


def grade_math(text: str, expected: float) -> bool:
    """True when the answer's concluding line states ``expected`` (rounded as written): as its final number, as
    a number marked as the answer ("the answer is …", a boxed one), or as a duration in hours and minutes
    (or minutes) that equals it in hours."""
    line = conclusion(text)
    numbers = _NUMBER_RE.findall(line)
    if any(_matches(n, expected) for n in numbers[-1:] + _MARKED.findall(line)):
        return True
    hours = [float(h) + float(m) / 60 for h, m in _HOURS_MINUTES.findall(line)]
    hours += [float(m) / 60 for m in _MINUTES.findall(line)]
    return any(abs(h - expected) <= 1e-6 * max(1.0, abs(expected)) for h in hours)


def extract_code(text: str) -> str:
    """The first fenced code block that defines a function (else the first block, else the whole text)."""
    blocks = [m.group(1) for m in _CODE_RE.finditer(text)]
    return next((b for b in blocks if "def " in b), blocks[0] if blocks else text).strip()


_RUNNER = """
import json, sys
def _no_network(event, args):  # an audit hook cannot be removed by the code it watches
    if event in ("socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto"):
        raise OSError("network access is disabled while grading")
sys.addaudithook(_no_network)
import contextlib, io
src, name, tests = json.loads(sys.stdin.read())
scope = {}
generated_output = contextlib.redirect_stdout(io.StringIO())  # what the code prints (its own examples) is not ours
generated_output.__enter__()
exec(compile(src, "<generated>", "exec"), scope)
# the function asked for, else the one the model wrote under a related name (fib, fibonacci_dp, ...)
defined = [k for k, v in scope.items() if getattr(getattr(v, "__code__", None), "co_filename", "") == "<generated>"]
related = [k for k in defined if name in k or k in name]
if name not in scope and not related and len(defined) != 1:
    raise NameError(f"no function {name!r} (defined: {defined})")
fn = scope[name] if name in scope else scope[(related or defined)[0]]

def fibonacci_contract(n, got):
    # documented either way: F(n), or the sequence (first n or n + 1 numbers, from 0 or from 1)
    seq = [0, 1]
    while len(seq) < n + 2:
        seq.append(seq[-1] + seq[-2])
    if isinstance(got, (list, tuple)):
        return list(got) in (seq[:n], seq[:n + 1], seq[1:n + 1], seq[1:n + 2])
    return got == seq[n]

def ok(args, want):
    got = fn(*args)
    if name == "fibonacci":
        return fibonacci_contract(args[0], got), got
    return got == want, got

failed = []
for args, want in tests:
    passed, got = ok(args, want)
    if not passed:
        failed.append([args, want, repr(got)])
generated_output.__exit__(None, None, None)
print(json.dumps(failed))
"""


def grade_code(text: str, function: str, tests: list, timeout: float = 10.0) -> tuple[bool | None, str]:
    """Run the answer's code, confined (``helpers.tasks.sandbox``), against ``tests`` ((args, result) pairs).

    Returns (passed, detail): detail names the failing test, the exception or the timeout. Where no sandbox works
    on this machine the code is not run: (None, "not graded: …").
    """
    payload = json.dumps([extract_code(text), function, [[list(a), r] for a, r in tests]])
    outcome = sandbox.run(_RUNNER, stdin=payload, timeout=timeout)
    if not outcome.ran:
        return None, f"not graded: {outcome.why}"
    if outcome.timed_out:
        return False, outcome.why
    if outcome.returncode != 0:
        lines = outcome.stderr.strip().splitlines()
        return False, lines[-1] if lines else f"exit {outcome.returncode}"
    try:
        failed = json.loads(outcome.stdout)
    except json.JSONDecodeError:
        return False, f"no result: {outcome.stdout[-200:]!r}"
    return (not failed), ("ok" if not failed else f"{function}{tuple(failed[0][0])} returned {failed[0][2]}, "
                                                   f"expected {failed[0][1]!r}")


def check_arguments(arguments: dict, schema: dict) -> list[str]:
    """Problems of ``arguments`` against a tool's JSON-Schema ``parameters`` (object of scalars)."""
    problems = [f"missing required argument {r!r}" for r in schema.get("required", []) if r not in arguments]
    types = {"number": (int, float), "integer": (int,), "string": (str,), "boolean": (bool,)}
    properties = schema.get("properties", {})
    for key, value in arguments.items():
        if key not in properties:
            problems.append(f"unknown argument {key!r}")
        elif not isinstance(value, types.get(properties[key].get("type"), object)) or (
                isinstance(value, bool) and properties[key].get("type") != "boolean"):
            problems.append(f"argument {key!r}={value!r} is not of type {properties[key].get('type')}")
    return problems


def grade_text(text: str, expected: str) -> bool:
    """``expected`` in the answer; a yes/no answer also in other words ("No, we cannot conclude …")."""
    answer = strip_special(text)
    if expected in answer:
        return True
    if expected.rstrip(".").lower() in ("yes", "no"):
        first = re.search(r"\b(yes|no)\b", answer, re.I)
        if first:
            return first.group(1).lower() == expected.rstrip(".").lower()
        return expected.lower().startswith("no") and bool(
            re.search(r"can ?not (be )?conclude|can't conclude|does not follow|not necessarily", answer, re.I))
    return False


def _names(tools: list[dict]) -> list[str]:
    return [t.get("function", t)["name"] for t in tools or []]


def grade_tool_call(text: str, name: str, arguments: dict, tools: list[dict]) -> tuple[bool, str]:
    """True when ``text`` holds exactly one well-formed call of ``name`` with ``arguments``."""
    try:
        calls = parse_tool_calls(text, _names(tools))
    except ValueError as err:
        return False, str(err)
    if not calls:
        return False, "no tool call"
    if len(calls) != 1 or calls[0]["name"] != name:
        return False, f"called {[c['name'] for c in calls]}, expected {name!r}"
    spec = next((t.get("function", t) for t in tools if t.get("function", t)["name"] == name), None)
    problems = check_arguments(calls[0]["arguments"], spec["parameters"]) if spec else [f"{name} not offered"]
    if problems:
        return False, "; ".join(problems)
    if calls[0]["arguments"] != arguments:
        return False, f"arguments {calls[0]['arguments']}, expected {arguments}"
    return True, "ok"


def grade(task, text: str) -> tuple[bool, str]:
    """Grade a completion of a ``helpers.tasks.curriculum.Task`` by its ``expected`` record."""
    exp = task.expected
    if exp.get("plain"):
        try:
            calls = parse_tool_calls(text, _names(task.tools))
        except ValueError as err:
            return False, str(err)
        if calls is not None:
            return False, f"called {[c['name'] for c in calls]} though no tool matches"
        if "number" in exp and not grade_math(text, exp["number"]):
            return False, f"final number {final_number(text)}, expected {exp['number']}"
        return True, "ok"
    if "name" in exp:
        return grade_tool_call(text, exp["name"], exp["arguments"], task.tools or [])
    if "function" in exp:
        return grade_code(text, exp["function"], exp["tests"])
    if "number" in exp:
        ok = grade_math(text, exp["number"])
        return ok, "ok" if ok else f"final number {final_number(text)}, expected {exp['number']}"
    ok = grade_text(text, exp["text"])
    return ok, "ok" if ok else f"{exp['text']!r} not in answer"
