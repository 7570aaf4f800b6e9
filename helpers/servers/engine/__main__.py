"""``slm-engine`` / ``python -m helpers.servers.engine``: load a genai build and serve it."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from helpers.servers.engine.api import MAX_BODY_BYTES, create_app
from helpers.servers.engine.engine import Engine


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="The SLM Engine: an OpenAI-compatible server on ONNX Runtime")
    parser.add_argument("--model", type=Path, required=True, help="an onnxruntime-genai model folder")
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--context", type=int, help="tokens of context to serve (default: the build's)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-batch", type=int, default=16, help="requests decoded together (vLLM's --max-num-seqs)")
    parser.add_argument("--max-queue", type=int, default=16, help="requests waiting beyond those; more get 429")
    parser.add_argument("--prefill-chunk", type=int, default=128,
                        help="prompt tokens read per pass beside the running requests' decode step (chunked prefill)")
    parser.add_argument("--prefill-budget", type=int,
                        help="prompt tokens read per step before the decode step, in chunks (default: one chunk; "
                             "more reads waiting prompts first, like vLLM's --max-num-batched-tokens)")
    parser.add_argument("--stream-interval", type=float, default=0.005, help="seconds between streamed chunks at most")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where ONNX Runtime runs the model and keeps the KV cache (cuda: onnxruntime-gpu, a CUDA "
                             "build of the model: the builder's -e cuda)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: the cores free at start)")
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="larger request bodies get 413")
    parser.add_argument("--api-key", default=os.environ.get("SLM_ENGINE_API_KEY"),
                        help="require 'Authorization: Bearer <key>' on /v1/* and /reasoning (env SLM_ENGINE_API_KEY)")
    args = parser.parse_args(argv)
    if not (args.model / "genai_config.json").exists():
        raise SystemExit(f"{args.model} is not an onnxruntime-genai model folder (no genai_config.json)")
    engine = Engine(args.model, args.served_model_name, args.max_batch, args.max_queue, args.stream_interval,
                    args.context, args.threads, args.prefill_chunk, args.prefill_budget, args.device)
    print(f"SLM Engine: {args.model.name} loaded in {engine.load_seconds:.2f} s as {args.served_model_name!r}", flush=True)
    uvicorn.run(create_app(engine, args.max_body_bytes, args.api_key), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    main()
