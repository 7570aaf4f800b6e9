"""vLLM tool parser for Phi-4-mini's *native* tool-call tokens: ``<|tool_call|>[...]<|/tool_call|>``.

vLLM's built-in ``phi4_mini_json`` parser only finds ``functools[...]``, the format that
vLLM's example template ``tool_chat_template_phi4_mini.jinja`` asks the model to write.
Phi-4-mini's own chat template (and phi4-nano, trained on it) answers with the special
tokens instead, which vLLM strips before parsing unless ``skip_special_tokens`` is off.
Load with ``--tool-parser-plugin <this file> --tool-call-parser phi4_mini_native``.
Runs inside vLLM's environment, not the notebook kernel.
"""
import json
import re

from vllm.entrypoints.generate.base.protocol import (DeltaMessage, ExtractedToolCallInformation, FunctionCall,
                                                     ToolCall)
from vllm.renderers.chat_utils import make_tool_call_id
from vllm.tool_parsers.abstract_tool_parser import ToolParser, ToolParserManager

CALL_START, CALL_END = "<|tool_call|>", "<|/tool_call|>"
_CALL_RE = re.compile(re.escape(CALL_START) + r"(.*?)" + re.escape(CALL_END), re.S)


@ToolParserManager.register_module("phi4_mini_native")
class Phi4MiniNativeToolParser(ToolParser):
    supports_required_and_named = False  # the model writes its own format; no JSON-schema forcing

    def adjust_request(self, request):
        request = super().adjust_request(request)
        if request.tools and request.tool_choice != "none":
            request.skip_special_tokens = False  # keep <|tool_call|> for the parser
        return request

    def extract_tool_calls(self, model_output, request):
        match = _CALL_RE.search(model_output)
        if not match:
            return ExtractedToolCallInformation(tools_called=False, tool_calls=[], content=model_output)
        try:
            calls = json.loads(match.group(1))
            calls = calls if isinstance(calls, list) else [calls]
            tool_calls = [ToolCall(id=make_tool_call_id(), type="function",
                                   function=FunctionCall(name=c["name"], arguments=json.dumps(
                                       c.get("arguments", {}), ensure_ascii=False)))
                          for c in calls]
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            return ExtractedToolCallInformation(tools_called=False, tool_calls=[], content=model_output)
        content = model_output[:match.start()].strip() or None
        return ExtractedToolCallInformation(tools_called=True, tool_calls=tool_calls, content=content)

    def extract_tool_calls_streaming(self, previous_text, current_text, delta_text, previous_token_ids,
                                     current_token_ids, delta_token_ids, request):
        # Like phi4_mini_json, tool calls are not streamed: text streams until a call starts.
        if CALL_START in current_text:
            return None
        return DeltaMessage(content=delta_text)
