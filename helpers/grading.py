"""Automatic graders for math answers, generated code and tool calls.

Generated code never runs in the kernel: ``grade_code`` runs it in a separate
Python process (isolated mode, no site-packages, a timeout, no network) against
hidden tests.
"""
from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys

from helpers.chat_format import parse_tool_calls, strip_special

_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")
_CODE_RE = re.compile(r"```(?:python)?\n(.*?)(?:```|$)", re.S)


def final_number(text: str) -> float | None:
    """The last number in ``text`` (the answer's final figure), or None."""
    numbers = _NUMBER_RE.findall(text.replace(",", ""))
    return float(numbers[-1]) if numbers else None


def grade_math(text: str, expected: float, tolerance: float = 1e-6) -> bool:
    """True when the answer's final number equals ``expected`` (relative tolerance)."""
    got = final_number(strip_special(text))
    return got is not None and abs(got - expected) <= tolerance * max(1.0, abs(expected))


def extract_code(text: str) -> str:
    """The first fenced code block of ``text``, or the whole text when there is none."""
    match = _CODE_RE.search(text)
    return (match.group(1) if match else text).strip()


_RUNNER = """
import json, sys
def _no_network(event, args):  # an audit hook cannot be removed by the code it watches
    if event in ("socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto"):
        raise OSError("network access is disabled while grading")
sys.addaudithook(_no_network)
src, name, tests = json.loads(sys.stdin.read())
scope = {}
exec(compile(src, "<generated>", "exec"), scope)
fn = scope[name]
failed = [[args, want, repr(fn(*args))] for args, want in tests if fn(*args) != want]
print(json.dumps(failed))
"""


@functools.cache
def _sandbox() -> list[str]:
    """``unshare -rn`` (a new user and network namespace: no interfaces but loopback, and loopback down)
    where the kernel allows it; else nothing, and the runner's socket guard alone keeps the network out."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-rn"]
    return []


def grade_code(text: str, function: str, tests: list, timeout: float = 10.0) -> tuple[bool, str]:
    """Run the answer's code in a subprocess against ``tests`` ((args, result) pairs).

    Returns (passed, detail): detail names the failing test, the exception or the timeout.
    """
    payload = json.dumps([extract_code(text), function, [[list(a), r] for a, r in tests]])
    try:
        proc = subprocess.run([*_sandbox(), sys.executable, "-I", "-S", "-c", _RUNNER], input=payload, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    if proc.returncode != 0:
        return False, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    failed = json.loads(proc.stdout)
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


def grade_tool_call(text: str, name: str, arguments: dict, tools: list[dict]) -> tuple[bool, str]:
    """True when ``text`` holds exactly one well-formed call of ``name`` with ``arguments``."""
    try:
        calls = parse_tool_calls(text)
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
    """Grade a completion of a ``helpers.curriculum.Task`` by its ``expected`` record."""
    exp = task.expected
    if exp.get("plain"):
        try:
            calls = parse_tool_calls(text)
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
    ok = exp["text"] in strip_special(text)
    return ok, "ok" if ok else f"{exp['text']!r} not in answer"
