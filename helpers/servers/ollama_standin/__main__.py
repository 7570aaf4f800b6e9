"""``ollama-standin`` / ``python -m helpers.servers.ollama_standin``: Ollama's API on llama.cpp (not Ollama)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from helpers.servers.ollama_standin.api import create_app
from helpers.servers.ollama_standin.runners import Service
from helpers.servers.ollama_standin.store import Store


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="A local stand-in for the Ollama server: Ollama's REST API on "
                                                 "llama.cpp. It is NOT Ollama.")
    parser.add_argument("--models", type=Path, required=True, help="where pulled/created models are stored")
    parser.add_argument("--library", type=Path, required=True, help="a local folder that /api/pull fetches from")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--parallel", type=int, default=int(os.environ.get("OLLAMA_NUM_PARALLEL", 2)),
                        help="requests served at once per model (OLLAMA_NUM_PARALLEL)")
    parser.add_argument("--max-queue", type=int, default=int(os.environ.get("OLLAMA_MAX_QUEUE", 512)),
                        help="requests that may wait beyond those; more get 503 (OLLAMA_MAX_QUEUE)")
    args = parser.parse_args(argv)
    origins = tuple(o.strip() for o in os.environ.get("OLLAMA_ORIGINS", "").split(",") if o.strip())
    print(f"Ollama API stand-in on llama.cpp (not Ollama), models in {args.models}, library {args.library}", flush=True)
    service = Service(Store(args.models), args.library, args.parallel, args.max_queue)
    uvicorn.run(create_app(service, args.host, origins), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
