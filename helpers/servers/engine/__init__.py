"""The SLM Engine: an OpenAI-compatible server on ONNX Runtime, for onnxruntime-genai builds.

Run: ``slm-engine --model FOLDER --served-model-name NAME --port 8080`` (or ``python -m
helpers.servers.engine``) where FOLDER is an onnxruntime-genai build (``genai_config.json``,
``model.onnx``) that ships its ``tokenizer.json`` and ``chat_template.jinja`` (nothing is
fetched at run time).

- ``POST /v1/chat/completions``: chat with sampling (temperature, top_p, top_k, seed,
  max_tokens, stop), SSE streaming with ``usage``, and function calling: the model's own chat
  template renders the tools, whatever the model writes for a call (Phi-4's ``<|tool_call|>``,
  ``<tool_call>``, a fenced JSON block: helpers/formats/tool_formats.py) comes back as OpenAI
  ``tool_calls`` (streamed too), ``tool`` messages feed results back;
- ``POST /v1/completions``: a raw prompt in, the text out (special tokens kept on request) —
  what the model wrote before any parser;
- ``GET /v1/models``, ``GET /health`` (model, variant, provider, readiness),
  ``GET /metrics`` (Prometheus text), and the seed's ``POST /reasoning``;
- continuous batching: up to ``--max-batch`` requests decode together, one forward pass per
  token for all of them (``engine.Engine``), behind a bounded queue; a full queue answers 429, a
  bad request 4xx JSON in OpenAI's error shape — never a 500.

Modules: ``schemas`` (request bodies), ``kv_cache`` (the ONNX Runtime session and the KV cache it
decodes over), ``engine`` (sampling and the decoding thread), ``api`` (the HTTP API), ``__main__``
(the command line). The container image (compose/onnx-engine/Dockerfile) holds this package,
``helpers/formats/{chat_format,tool_formats}.py``, ``helpers/system/cpus.py`` and their wheels:
CPU onnxruntime, onnx (to edit the graph in memory), tokenizers, jinja2, fastapi, uvicorn.
"""
