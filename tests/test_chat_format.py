
from helpers.formats import chat_format
from helpers.tasks.curriculum import CIRCLE_TOOL


def test_templates_that_read_tools_from_the_system_message_are_recognised():
    assert chat_format.tools_in_system_message("{% if 'tools' in message and message['tools'] %}")  # Phi-4-mini's
    assert chat_format.tools_in_system_message(chat_format.CHAT_TEMPLATE)  # phi4-nano's reads both
    assert not chat_format.tools_in_system_message("{%- for tool in tools %}{{ tool | tojson }}{% endfor %}")  # Qwen's


def test_render_prompt_puts_tools_where_the_template_reads_them():
    template = chat_format.compile_template("{% for m in messages %}[{{ m.role }}:{{ m.content }}"
                                            "{% if m.tools %}|{{ m.tools }}{% endif %}]{% endfor %}"
                                            "{% if tools %}<{{ tools | length }} tools>{% endif %}")
    messages = [{"role": "user", "content": "Hi"}]
    assert chat_format.render_prompt(template, messages, [CIRCLE_TOOL]) == "[user:Hi]<1 tools>"
    with_system = chat_format.render_prompt(template, messages, [CIRCLE_TOOL], system_tools=True)
    assert with_system.startswith("[system:|[{\"name\": \"calculate_circle_area\"") and with_system.endswith("<1 tools>")


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
