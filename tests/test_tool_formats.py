"""Tool calls as models write them: every format parsed, offered tools only for JSON, streaming held back."""
import pytest

from helpers.formats import tool_formats

CALL = {"name": "calculate_circle_area", "arguments": {"radius": 5}}
NAMES = ["calculate_circle_area", "get_weather"]


@pytest.mark.parametrize("text, fmt", [
    ('<|tool_call|>[{"name": "calculate_circle_area", "arguments": {"radius": 5}}]<|/tool_call|>', "phi4"),
    ('<|tool_call|>{"name": "calculate_circle_area", "arguments": {"radius": 5}}', "phi4"),  # ended by EOS
    ('functools[{"name": "calculate_circle_area", "arguments": {"radius": 5}}]', "functools"),
    ('<tool_call>\n{"name": "calculate_circle_area", "arguments": {"radius": 5}}\n</tool_call>', "hermes"),
    ('```json\n{"name": "calculate_circle_area", "arguments": {"radius": 5}}\n```', "fenced-json"),
    ('{"name": "calculate_circle_area", "arguments": {"radius": 5}}', "fenced-json"),  # bare object as the answer
])
def test_every_format_parses_to_the_same_call(text, fmt):
    parsed = tool_formats.parse(text, NAMES)
    assert parsed.calls == [CALL] and parsed.format == fmt and parsed.content == ""


def test_text_around_a_call_stays_content_and_several_calls_are_read():
    text = ('Let me check.<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>')
    parsed = tool_formats.parse(text, NAMES)
    assert parsed.content == "Let me check." and [c["arguments"]["city"] for c in parsed.calls] == ["Oslo", "Rome"]


def test_json_in_an_answer_is_not_a_call_unless_it_names_an_offered_tool():
    code = '```json\n{"name": "Ada", "age": 36}\n```'
    assert tool_formats.parse(code, NAMES).calls is None
    other_tool = '```json\n{"name": "delete_everything", "arguments": {}}\n```'
    assert tool_formats.parse(other_tool, NAMES).calls is None
    assert tool_formats.parse(other_tool).calls == [{"name": "delete_everything", "arguments": {}}]  # any name
    assert tool_formats.parse("The answer is 42.", NAMES).calls is None


@pytest.mark.parametrize("bad", ['<|tool_call|>[{"name": 3}]<|/tool_call|>', "<|tool_call|>[{oops<|/tool_call|>",
                                 "<tool_call>not json</tool_call>", "functools[{broken"])
def test_a_malformed_marked_call_stays_text_and_graders_refuse_it(bad):
    parsed = tool_formats.parse(bad, NAMES)
    assert parsed.calls is None and parsed.content == bad and parsed.malformed
    with pytest.raises(ValueError):
        tool_formats.parse_tool_calls(bad, NAMES)


VALID = '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Oslo"}}]<|/tool_call|>'


@pytest.mark.parametrize("second", ['<|tool_call|>[{"name": "get_weather", "arguments": ',  # cut off by max_tokens
                                    "<|tool_call|>[{oops<|/tool_call|>", '<|tool_call|>[{"name": 3}]<|/tool_call|>'])
def test_a_valid_call_beside_a_malformed_one_is_a_call_on_every_backend(second):
    """One behaviour for the engine, the Ollama stand-in (both stream through StreamSplitter) and vLLM's plugin
    (parse): the well-formed call is returned, the malformed block stays content."""
    text = VALID + second
    parsed = tool_formats.parse(text, NAMES)
    assert parsed.calls == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert parsed.content == second.strip() and len(parsed.malformed) == 1
    shown, end = _stream(tool_formats.StreamSplitter(NAMES), [text[:20], text[20:]])
    assert shown == "" and (end.calls, end.content) == (parsed.calls, parsed.content)
    with pytest.raises(ValueError):  # a grader still counts the answer as malformed
        tool_formats.parse_tool_calls(text, NAMES)


def test_several_well_formed_marked_blocks_are_all_calls():
    second = VALID.replace("Oslo", "Rome")
    parsed = tool_formats.parse(VALID + " " + second, NAMES)
    assert [c["arguments"]["city"] for c in parsed.calls] == ["Oslo", "Rome"] and not parsed.malformed


def test_to_text_round_trips_and_matches_phi4_minis_form():
    text = tool_formats.to_text([CALL])
    assert text == '<|tool_call|>[{"name": "calculate_circle_area", "arguments": {"radius": 5}}]<|/tool_call|>'
    assert tool_formats.parse_tool_calls(text) == [CALL]
    assert tool_formats.parse_tool_calls(tool_formats.to_text([CALL], "hermes")) == [CALL]


def _stream(splitter, pieces):
    shown = "".join(splitter.feed(p) for p in pieces)
    return shown, splitter.finish()


def test_streaming_shows_text_and_holds_back_a_call_until_the_end():
    pieces = ["Sure", "! ``", "`json\n{\"name\": \"calculate_circle_area\",", " \"arguments\": {\"radius\": 5}}\n```"]
    shown, end = _stream(tool_formats.StreamSplitter(NAMES), pieces)
    assert shown == "Sure! " and end.calls == [CALL] and end.content == ""


def test_streaming_releases_held_text_that_was_no_call_and_hides_special_tokens():
    pieces = ["Here:\n```py", "thon\nprint(1)\n```", " done<|im", "_end|>"]
    shown, end = _stream(tool_formats.StreamSplitter(NAMES, hidden=("<|im_end|>",)), pieces)
    assert shown == "Here:\n" and end.calls is None and end.content == "```python\nprint(1)\n``` done"
    plain, rest = _stream(tool_formats.StreamSplitter(None, hidden=("<|end|>",)), ["a ``", "`b<|e", "nd|>"])
    assert plain + rest.content == "a ```b"  # without tools nothing is held back but special tokens


def test_a_bare_json_call_is_held_and_parsed_when_streamed():
    shown, end = _stream(tool_formats.StreamSplitter(NAMES), ["\n", '{"name": "get_weather",', ' "arguments": {"city": "Oslo"}}'])
    assert shown == "" and end.calls == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    shown, end = _stream(tool_formats.StreamSplitter(NAMES), ['{"a": 1} is JSON.'])
    assert shown == "" and end.calls is None and end.content == '{"a": 1} is JSON.'  # released at the end
