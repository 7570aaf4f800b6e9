import pytest

from helpers import chat_format
from helpers.curriculum import CIRCLE_TOOL


def test_parse_tool_calls_reads_phi4_mini_form():
    text = '<|tool_call|>[{"name": "calculate_circle_area", "arguments": {"radius": 5}}]<|/tool_call|>'
    assert chat_format.parse_tool_calls(text) == [{"name": "calculate_circle_area", "arguments": {"radius": 5}}]


def test_parse_tool_calls_none_for_plain_text():
    assert chat_format.parse_tool_calls("The answer is 42.") is None


@pytest.mark.parametrize("bad", ['<|tool_call|>[{"name": 3}]<|/tool_call|>', "<|tool_call|>[{oops<|/tool_call|>"])
def test_parse_tool_calls_rejects_malformed(bad):
    with pytest.raises(ValueError):
        chat_format.parse_tool_calls(bad)


def test_format_then_parse_round_trips():
    calls = [{"name": "get_weather", "arguments": {"city": "Köln"}}]
    assert chat_format.parse_tool_calls(chat_format.format_tool_calls(calls)) == calls


def test_template_matches_phi4_mini_layout():
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    import json

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "calculate_circle_area", "arguments": {"radius": 5}}}]},
                {"role": "tool", "content": '{"area": 78.54}'}]
    text = env.from_string(chat_format.CHAT_TEMPLATE).render(messages=messages, tools=[CIRCLE_TOOL],
                                                             add_generation_prompt=True)
    spec = json.dumps(CIRCLE_TOOL["function"])
    assert text == (f"<|system|>Be brief.<|tool|>[{spec}]<|/tool|><|end|><|user|>Hi<|end|>"
                    '<|assistant|><|tool_call|>[{"name": "calculate_circle_area", "arguments": {"radius": 5}}]'
                    '<|/tool_call|><|end|><|tool|>{"area": 78.54}<|end|><|assistant|>')


def test_template_adds_system_turn_for_tools_alone():
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    import json

    env = ImmutableSandboxedEnvironment()
    env.filters["tojson"] = lambda x, **kw: json.dumps(x)
    text = env.from_string(chat_format.CHAT_TEMPLATE).render(
        messages=[{"role": "user", "content": "Hi"}], tools=[CIRCLE_TOOL], add_generation_prompt=False)
    assert text.startswith("<|system|><|tool|>[{") and text.endswith("<|user|>Hi<|end|>")


def test_openai_tool_calls_carry_ids_indexes_and_json_arguments():
    calls = chat_format.openai_tool_calls([{"name": "f", "arguments": {"x": 1}}, {"name": "g", "arguments": {}}])
    assert [c["index"] for c in calls] == [0, 1] and calls[0]["id"] != calls[1]["id"]
    assert calls[0]["function"] == {"name": "f", "arguments": '{"x": 1}'} and calls[0]["type"] == "function"
