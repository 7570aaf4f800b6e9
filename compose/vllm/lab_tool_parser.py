"""vLLM tool parser for the tool calls the lab's models actually write: ``--tool-call-parser slm_lab``.

- Phi-4-mini's *native* tokens ``<|tool_call|>[...]<|/tool_call|>`` (its own chat template, and
  phi4-nano): vLLM's ``phi4_mini_json`` only reads ``functools[...]`` (what vLLM's example
  template asks for), and vLLM strips special tokens before any parser sees them, so this
  parser turns ``skip_special_tokens`` off for requests with tools;
- Qwen's ``<tool_call>{...}</tool_call>`` (what vLLM's ``hermes`` parser reads), and the fenced
  ```` ```json ```` object that Qwen2.5-Coder-0.5B writes instead, for which ``hermes`` returns
  ``tool_calls: null``.

The formats are parsed by ``helpers/formats/tool_formats.py`` (stdlib only), the same code the lab's
engine, Ollama stand-in and graders use. Load with
``--tool-parser-plugin <this file> --tool-call-parser slm_lab``; it runs inside vLLM's environment
(its own virtualenv, or the vLLM image with the repository's ``helpers/`` mounted beside
``compose/vllm/`` under /lab). Like ``phi4_mini_json``, tool calls are not streamed: text streams
until a call may begin.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root (/lab in a container)

from helpers.formats.tool_formats import OPENERS, parse  # noqa: E402
from vllm.entrypoints.generate.base.protocol import (DeltaMessage, ExtractedToolCallInformation,  # noqa: E402
                                                     FunctionCall, ToolCall)
from vllm.renderers.chat_utils import make_tool_call_id  # noqa: E402
from vllm.tool_parsers.abstract_tool_parser import ToolParser, ToolParserManager  # noqa: E402


@ToolParserManager.register_module("slm_lab")
class LabToolParser(ToolParser):
    supports_required_and_named = False  # the model writes its own format; no JSON-schema forcing

    def adjust_request(self, request):
        request = super().adjust_request(request)
        if request.tools and request.tool_choice != "none":
            request.skip_special_tokens = False  # keep <|tool_call|> for the parser
        return request

    def extract_tool_calls(self, model_output, request):
        names = [tool.function.name for tool in request.tools or []]
        parsed = parse(model_output, names)  # a malformed block stays text, as the model wrote it
        if not parsed.calls:
            return ExtractedToolCallInformation(tools_called=False, tool_calls=[], content=model_output)
        calls = [ToolCall(id=make_tool_call_id(), type="function",
                          function=FunctionCall(name=c["name"], arguments=json.dumps(c["arguments"], ensure_ascii=False)))
                 for c in parsed.calls]
        return ExtractedToolCallInformation(tools_called=True, tool_calls=calls, content=parsed.content or None)

    def extract_tool_calls_streaming(self, previous_text, current_text, delta_text, previous_token_ids,
                                     current_token_ids, delta_token_ids, request):
        if any(opener in current_text for opener in OPENERS):
            return None
        return DeltaMessage(content=delta_text)
