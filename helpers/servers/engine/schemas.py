"""The engine's request bodies (pydantic): what a client may send, validated into 4xx by construction."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


MAX_STOP_CHARS = 256  # a stop string is checked against the end of the text at every token


def _stop_list(value) -> list[str]:
    stops = [value] if isinstance(value, str) else (value or [])
    if len(stops) > 4 or any(not s or len(s) > MAX_STOP_CHARS for s in stops):
        raise ValueError(f"stop: at most 4 non-empty strings of at most {MAX_STOP_CHARS} characters")
    return stops


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionSpec(_Body):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    parameters: dict = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Tool(_Body):
    type: Literal["function"] = "function"
    function: FunctionSpec


class ToolCallFunction(_Body):
    name: str
    arguments: str | dict = "{}"


class ToolCallIn(_Body):
    id: str = ""
    type: Literal["function"] = "function"
    function: ToolCallFunction


class TextPart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(_Body):
    include_usage: bool = False


class ChatRequest(_Body):
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)  # 0: no top-k cut
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    min_tokens: int = Field(0, ge=0)  # vLLM's extension: EOS is suppressed until this many tokens
    ignore_eos: bool = False  # vLLM's extension: EOS is suppressed for the whole answer (load tests)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict | None = None
    n: int = Field(1, ge=1, le=1)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        return _stop_list(value)

    @model_validator(mode="after")
    def _turns(self):
        """A user turn has content; a tool turn answers an assistant's tool calls (OpenAI's rules: 400)."""
        answering = False  # the turns since the last assistant message with tool_calls are tool results
        for i, m in enumerate(self.messages):
            if m.role == "user" and m.content is None:
                raise ValueError(f"messages.{i}: a user message needs content")
            if m.role == "tool" and not answering:
                raise ValueError(f"messages.{i}: a message with role 'tool' must answer a preceding assistant "
                                 "message with 'tool_calls'")
            answering = (m.role == "assistant" and bool(m.tool_calls)) or (m.role == "tool" and answering)
        return self


class CompletionRequest(_Body):
    model: str
    prompt: str = Field(min_length=1)
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    skip_special_tokens: bool = True  # vLLM's extension: False keeps special tokens in the text
    stream: Literal[False] = False

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        return _stop_list(value)


class ReasoningRequest(_Body):
    prompt: str = Field(min_length=1)
    task_type: Literal["reasoning", "math", "coding"] = "reasoning"
    max_length: int = Field(200, ge=1)
    temperature: float = Field(0.3, ge=0.0, le=2.0)
