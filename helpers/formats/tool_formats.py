"""Tool calls as models actually write them, parsed into ``[{"name", "arguments"}]``.

Formats (``FORMATS``):

- ``phi4``: Phi-4-mini's native special tokens, ``<|tool_call|>[{...}]<|/tool_call|>``;
- ``functools``: ``functools[{...}]``, what vLLM's ``tool_chat_template_phi4_mini.jinja`` asks for;
- ``hermes``: ``<tool_call>{...}</tool_call>``, what Qwen's chat template asks for;
- ``fenced-json``: a Markdown block ````` ```json {"name": ..., "arguments": {...}} ``` ````` (or the bare
  object as the whole answer) — what Qwen2.5-Coder-0.5B writes *despite* its template.

The marked formats are tool calls by their markers: every well-formed block (a list of
``{name, arguments}`` objects) is a call; a malformed one stays in the content as the model
wrote it and is named in ``Parsed.malformed``. Every backend (the SLM Engine, the Ollama stand-in,
vLLM's parser plugin) extracts calls this way; graders use ``parse_tool_calls``, which refuses
an answer with a malformed block (``ValueError``). A fenced or bare JSON object only counts when
it names one of the offered tools, so ordinary JSON in an answer stays text.

Stdlib only: vLLM's tool-parser plugin (compose/vllm/lab_tool_parser.py) imports it too.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

PHI4_START, PHI4_END = "<|tool_call|>", "<|/tool_call|>"
HERMES_START, HERMES_END = "<tool_call>", "</tool_call>"
FUNCTOOLS_START = "functools["
FENCE = "```"
FORMATS = ("phi4", "functools", "hermes", "fenced-json")
# Text that may open a tool call: a streamed answer holds text back from here until it knows.
OPENERS = (PHI4_START, HERMES_START, FUNCTOOLS_START, FENCE)

_INVALID = object()  # a block that is not JSON
_FENCED = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.S)


@dataclass
class Parsed:
    """What a completion holds: the text meant for the reader, the calls (None: none), the format they came in."""

    content: str
    calls: list[dict] | None
    format: str | None
    malformed: list[str] = field(default_factory=list)  # why each malformed marked block is not a call


def _as_calls(value, where: str) -> list[dict]:
    """``value`` (a JSON object or list of them) as calls; ValueError when it is not calls."""
    calls = value if isinstance(value, list) else [value]
    if not calls or not all(isinstance(c, dict) and isinstance(c.get("name"), str)
                            and isinstance(c.get("arguments", c.get("parameters", {})), dict) for c in calls):
        raise ValueError(f"{where} is not a list of {{name, arguments}} objects: {value!r}")
    return [{"name": c["name"], "arguments": c.get("arguments", c.get("parameters", {}))} for c in calls]


def _marked(text: str, start: str, end: str | None, fmt: str) -> Parsed | None:
    """Every ``start … end`` block (the last may run to the end of the text): the well-formed ones as calls,
    malformed ones left in the content."""
    if start not in text:
        return None
    content, calls, malformed, rest = text[:text.index(start)], [], [], text[text.index(start):]
    while rest.startswith(start):
        body = rest[len(start):]
        if end is None:  # functools[...]: the JSON list closes itself
            try:
                value, used = json.JSONDecoder().raw_decode("[" + body)
                inside, rest = body[:used - 1], body[used - 1:]
            except json.JSONDecodeError:
                value, inside, rest = _INVALID, body, ""  # unclosed: the block runs to the end
            block = start + inside
        else:
            inside, closed, rest = body.partition(end)
            block = start + inside + closed
            try:
                value = json.loads(inside.strip())
            except json.JSONDecodeError:
                value = _INVALID
        try:
            if value is _INVALID:
                raise ValueError(f"{fmt} tool call is not valid JSON: {inside!r}")
            calls += _as_calls(value, f"{fmt} tool call")
        except ValueError as err:
            malformed.append(str(err))
            content += block
        rest = rest.lstrip()
    if not calls:
        return Parsed(text, None, None, malformed)
    return Parsed((content + rest).strip(), calls, fmt, malformed)


def _fenced(text: str, tool_names) -> Parsed | None:
    """A JSON tool call in a code fence, or the bare JSON object as the whole answer."""
    candidates = [(m.start(), m.end(), m.group(1)) for m in _FENCED.finditer(text)]
    if text.strip().startswith(("{", "[")):
        candidates.append((0, len(text), text.strip()))
    for start, end, body in candidates:
        try:
            calls = _as_calls(json.loads(body.strip()), "fenced JSON")
        except (json.JSONDecodeError, ValueError):
            continue
        if tool_names is not None and not all(c["name"] in tool_names for c in calls):
            continue
        return Parsed((text[:start] + text[end:]).strip(), calls, "fenced-json")
    return None


def parse(text: str, tool_names=None) -> Parsed:
    """The tool calls in ``text`` (``calls`` None when there are none) and what remains as content.

    ``tool_names``: the names of the offered tools (a fenced or bare JSON object must name one);
    None accepts any name. Malformed marked blocks stay in the content (``Parsed.malformed`` says why).
    """
    malformed = []
    for start, end, fmt in ((PHI4_START, PHI4_END, "phi4"), (HERMES_START, HERMES_END, "hermes"),
                            (FUNCTOOLS_START, None, "functools")):
        found = _marked(text, start, end, fmt)
        if found and found.calls:
            return found
        malformed += found.malformed if found else []
    found = _fenced(text, tool_names) or Parsed(text, None, None)
    found.malformed = malformed
    return found


def parse_tool_calls(text: str, tool_names=None) -> list[dict] | None:
    """The calls of ``parse`` (None when the text holds none), for graders: ValueError when the answer holds a
    malformed marked block, even beside well-formed ones."""
    parsed = parse(text, tool_names)
    if parsed.malformed:
        raise ValueError(parsed.malformed[0])
    return parsed.calls


class StreamSplitter:
    """Streamed text split into what a client may see now and a possible tool call held back.

    With tools offered (``tool_names`` not None), text from the first ``OPENERS`` occurrence on
    (or the whole answer, when it opens with ``{`` or ``[``: a bare JSON call) is held until the end; ``finish()`` then parses it: a tool call comes back as calls, anything
    else as text (a malformed marked block stays text, as the model wrote it). ``hidden`` strings
    (special tokens) are never shown; a tail that may be the start of one is kept back too.
    """

    def __init__(self, tool_names=None, hidden=()):
        self.tool_names, self.hidden = tool_names, tuple(hidden)
        self.openers = OPENERS if tool_names is not None else ()
        self.pending, self.holding, self.shown = "", False, False

    def feed(self, piece: str) -> str:
        self.pending += piece
        if self.holding:
            return ""
        if self.openers and not self.shown and self.pending.lstrip().startswith(("{", "[")):
            self.holding = True  # an answer that opens with JSON may be a bare call: hold it all
            return ""
        at = min((i for i in (self.pending.find(o) for o in self.openers) if i >= 0), default=-1)
        if at >= 0:
            out, self.pending, self.holding = self.pending[:at], self.pending[at:], True
            return self._visible(out)
        keep = max((n for s in self.openers + self.hidden for n in range(1, len(s)) if self.pending.endswith(s[:n])),
                   default=0)
        if not self.shown and not self.pending.strip():
            keep = len(self.pending)  # leading whitespace: the answer's first character decides
        out, self.pending = self.pending[:len(self.pending) - keep], self.pending[len(self.pending) - keep:]
        self.shown = self.shown or bool(out.strip())
        return self._visible(out)

    def finish(self) -> Parsed:
        """The text not shown yet and the calls, once generation has ended."""
        text = self._visible(self.pending)  # an end-of-turn token after a bare JSON call must not hide the call
        return parse(text, self.tool_names) if self.holding else Parsed(text, None, None)

    def _visible(self, text: str) -> str:
        for token in self.hidden:
            text = text.replace(token, "")
        return text


def to_text(calls: list[dict], fmt: str = "phi4") -> str:
    """``calls`` written in ``fmt`` (how a grader or a template sees them)."""
    body = json.dumps([{"name": c["name"], "arguments": c["arguments"]} for c in calls], ensure_ascii=False)
    if fmt == "phi4":
        return f"{PHI4_START}{body}{PHI4_END}"
    if fmt == "hermes":
        return "".join(f"{HERMES_START}\n{json.dumps(c, ensure_ascii=False)}\n{HERMES_END}" for c in calls)
    raise ValueError(f"cannot write tool calls as {fmt!r}")
