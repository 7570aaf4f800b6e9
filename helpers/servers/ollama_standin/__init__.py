"""A local stand-in for the Ollama server: Ollama's REST API on llama.cpp. It is NOT Ollama.

The real Ollama server cannot be installed on the machines this lab's CI runs on
(docs/ollama-standin.md), so the local runtime serves the part of Ollama's API that
the official ``ollama`` client uses in notebook 02, on llama.cpp — the engine Ollama
itself runs — through the ``xllamacpp`` bindings. The docker runtime always runs the
official ``ollama/ollama`` image.

    ollama-standin --models DIR --library DIR --port 11434   (or python -m helpers.servers.ollama_standin)

Implemented, after Ollama's API documentation: ``/api/tags``, ``/api/show`` (with
``model_info`` read from the GGUF), ``/api/pull`` (from a local library folder, with
streamed progress), ``/api/create`` (FROM + SYSTEM + PARAMETER -> a stored variant whose
system prompt and options apply), ``/api/copy``, ``/api/delete``, ``/api/generate``,
``/api/chat`` (tools; tool-call arguments as JSON objects), ``/api/ps``, ``/api/version``,
NDJSON streaming, ``options`` with Ollama's defaults and type checks, ``keep_alive``, and
the OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models``. Errors are Ollama's
``{"error": "..."}`` with its status codes.

Differences from Ollama, on purpose: prompt templates are the GGUF's Jinja chat template
(Ollama converts them to Go templates); ``context`` (deprecated) is not returned; models
come from a local library folder instead of registry.ollama.ai.

Modules: ``errors`` (Ollama's error shape), ``options`` (request options and keep_alive as Ollama reads
them), ``store`` (models on disk in Ollama's layout, and the local library pulls come from), ``runners``
(GGUFs loaded in llama.cpp, and generation), ``api`` (the HTTP API), ``__main__`` (the command line).
"""
