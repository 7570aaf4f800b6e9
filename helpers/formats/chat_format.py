"""Phi-4-mini's chat format: special tokens, the chat template and tool-call parsing.

The template renders tools into the system turn as ``<|tool|>[...]<|/tool|>`` and
assistant tool calls as ``<|tool_call|>[...]<|/tool_call|>``, as Phi-4-mini does.
It accepts OpenAI-style tools (``{"type": "function", "function": {...}}``) or
bare function dicts, passed as the ``tools`` argument or, as in Phi-4-mini's own
template, as a JSON string under a system message's ``tools`` key.
"""
from __future__ import annotations

import json
import re
import uuid

SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
TOOL, TOOL_END = "<|tool|>", "<|/tool|>"
TOOL_CALL, TOOL_CALL_END = "<|tool_call|>", "<|/tool_call|>"
ENDOFTEXT = "<|endoftext|>"
SPECIAL_TOKENS = [ENDOFTEXT, SYSTEM, USER, ASSISTANT, END, TOOL, TOOL_END, TOOL_CALL, TOOL_CALL_END]

# One line per construct; whitespace control keeps the rendered prompt free of
# stray newlines so that every backend (jinja2 in transformers/vLLM/our servers)
# produces the same token ids.
#
# Tool schemas are written with their keys in one order (name, description, parameters; and
# type, properties, required inside parameters, then any others as given): clients serialise
# them differently (the ``ollama`` client and Ollama's Go structs put "required" first), and the
# prompt must not depend on that.
CHAT_TEMPLATE = (
    "{%- macro ordered(d, order) -%}"
    "{%- set keys = (order | select('in', d) | list) + (d | reject('in', order) | list) -%}"
    "{ {%- for k in keys -%}{{ k | tojson }}: {{ d[k] | tojson }}{%- if not loop.last %}, {% endif -%}{%- endfor -%} }"
    "{%- endmacro -%}"
    "{%- macro render_function(f) -%}"
    "{%- set top = ['name', 'description', 'parameters'] -%}"
    "{%- set keys = (top | select('in', f) | list) + (f | reject('in', top) | list) -%}"
    "{ {%- for k in keys -%}{{ k | tojson }}: "
    "{%- if k == 'parameters' and f[k] is mapping %} {{ ordered(f[k], ['type', 'properties', 'required']) }}"
    "{%- else %} {{ f[k] | tojson }}{%- endif -%}"
    "{%- if not loop.last %}, {% endif -%}{%- endfor -%} }"
    "{%- endmacro -%}"
    "{%- macro render_tools(ts) -%}"
    "{%- if ts is string -%}{{ ts }}{%- else -%}"
    "[{%- for t in ts -%}{{ render_function(t.function if t.function is defined else t) }}"
    "{%- if not loop.last %}, {% endif -%}{%- endfor -%}]"
    "{%- endif -%}"
    "{%- endmacro -%}"
    "{%- if tools and (messages | length == 0 or messages[0].role != 'system') -%}"
    "<|system|><|tool|>{{ render_tools(tools) }}<|/tool|><|end|>"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message.role == 'system' -%}"
    "<|system|>{{ message.content or '' }}"
    "{%- set ts = tools if tools else message.get('tools') -%}"
    "{%- if ts -%}<|tool|>{{ render_tools(ts) }}<|/tool|>{%- endif -%}<|end|>"
    "{%- elif message.role == 'assistant' and message.get('tool_calls') -%}"
    "<|assistant|>{{ message.content or '' }}<|tool_call|>["
    "{%- for tc in message.tool_calls -%}"
    "{%- set f = tc.function if tc.function is defined else tc -%}"
    '{"name": {{ f.name | tojson }}, "arguments": '
    "{%- if f.arguments is string %} {{ f.arguments }}{% else %} {{ f.arguments | tojson }}{% endif -%}"
    "}{%- if not loop.last %}, {% endif -%}"
    "{%- endfor -%}]<|/tool_call|><|end|>"
    "{%- else -%}"
    "<|{{ message.role }}|>{{ message.content or '' }}<|end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)

def compile_template(source: str):
    """A chat template compiled as transformers compiles it: jinja2's immutable sandbox with
    trim_blocks/lstrip_blocks, loop controls and a ``tojson`` that does not HTML-escape, so a
    server that renders it produces the same prompt (and token ids) as ``apply_chat_template``."""
    import jinja2.sandbox

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)

    def raise_exception(message):
        raise ValueError(f"chat template: {message}")

    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


_SYSTEM_TOOLS = re.compile(r"""message(\[['"]tools['"]\]|\.tools\b|\.get\(['"]tools['"])|['"]tools['"] in message""")


def tools_in_system_message(template_source: str) -> bool:
    """True for templates that read tools from the system message (Phi-4-mini's own: a JSON string
    under its ``tools`` key) rather than from the ``tools`` variable (transformers' convention)."""
    return bool(_SYSTEM_TOOLS.search(template_source))


def render_prompt(template, messages: list[dict], tools: list[dict] | None = None, system_tools: bool = False) -> str:
    """The prompt text for ``messages`` (dicts with role/content/tool_calls), ready for the assistant.

    Tools go in the ``tools`` variable, as ``apply_chat_template`` passes them; with ``system_tools``
    (Phi-4-mini's own template) also as a JSON string under the system message's ``tools`` key,
    a system turn added if there is none.
    """
    if not tools:
        return template.render(messages=messages, add_generation_prompt=True)
    functions = [function_spec(t) for t in tools]
    if system_tools:
        if not messages or messages[0]["role"] != "system":
            messages = [{"role": "system", "content": ""}] + list(messages)
        messages = [{**messages[0], "tools": json.dumps(functions, ensure_ascii=False)}] + list(messages[1:])
    return template.render(messages=messages, tools=tools, add_generation_prompt=True)


def function_spec(tool: dict) -> dict:
    """The bare function dict of an OpenAI-style tool (or the dict itself)."""
    return tool.get("function", tool)


def format_tool_calls(calls: list[dict]) -> str:
    """The text Phi-4-mini emits for ``calls`` (dicts with name and arguments)."""
    body = ", ".join(
        '{"name": %s, "arguments": %s}' % (json.dumps(c["name"], ensure_ascii=False), json.dumps(c["arguments"], ensure_ascii=False)) for c in calls
    )
    return f"{TOOL_CALL}[{body}]{TOOL_CALL_END}"


def openai_tool_calls(calls: list[dict]) -> list[dict]:
    """Parsed calls (name, arguments dict) as OpenAI ``tool_calls``: ids, and arguments as a JSON string."""
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "index": i, "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
            for i, c in enumerate(calls)]


def strip_special(text: str) -> str:
    """Text with Phi-4-mini's special tokens removed."""
    for token in SPECIAL_TOKENS:
        text = text.replace(token, "")
    return text.strip()
