"""Request options as Ollama reads them (api.Options): names, types, defaults, and keep_alive durations."""
from __future__ import annotations

import re

from helpers.servers.ollama_standin.errors import OllamaError

# Ollama's option names and types (api.Options), and the defaults Ollama documents for its Modelfile.
OPTION_TYPES = {
    "numa": bool, "num_ctx": int, "num_batch": int, "num_gpu": int, "main_gpu": int, "low_vram": bool,
    "vocab_only": bool, "use_mmap": bool, "use_mlock": bool, "num_thread": int, "num_keep": int, "seed": int,
    "num_predict": int, "top_k": int, "top_p": float, "min_p": float, "typical_p": float, "repeat_last_n": int,
    "temperature": float, "repeat_penalty": float, "presence_penalty": float, "frequency_penalty": float,
    "penalize_newline": bool, "stop": list, "mirostat": int, "mirostat_tau": float, "mirostat_eta": float,
    "tfs_z": float,
}
DEFAULT_OPTIONS = {"num_ctx": 4096, "num_predict": -1, "temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
                   "repeat_penalty": 1.1, "repeat_last_n": 64, "seed": -1}
LOAD_OPTIONS = ("num_ctx", "num_thread", "num_batch")  # changing these reloads the runner, as in Ollama
TYPE_NAMES = {int: "integer", float: "float32", bool: "boolean", list: "array"}  # api.Options.FromMap's words


def _type_ok(kind: type, value) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return kind is float or float(value).is_integer()  # JSON has one number type: 2.0 is an integer


def check_options(options) -> dict:
    """Options with Ollama's type checks (api.Options.FromMap): an unknown key is ignored (and logged); a
    wrong type is an error that Ollama's handlers answer with 500 (handleScheduleError's default branch,
    v0.18.2), so the stand-in does too."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise OllamaError(400, "options must be an object")
    checked = {}
    for key, value in options.items():
        kind = OPTION_TYPES.get(key)
        if kind is None:
            print(f"warning: invalid option provided: {key}", flush=True)
            continue
        if kind is list and isinstance(value, str):  # Ollama accepts a single stop string too
            value = [value]
        if not _type_ok(kind, value):
            raise OllamaError(500, f'option "{key}" must be of type {TYPE_NAMES[kind]}')
        checked[key] = int(value) if kind is int else value
    return checked


def keep_alive_seconds(value) -> float:
    """Ollama's keep_alive: a duration ("5m", "30s", "1h"), seconds, 0 (unload now) or negative (forever)."""
    if value is None:
        return 300.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?", str(value).strip())
    if not match:
        raise OllamaError(400, f"time: invalid duration \"{value}\"")
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
