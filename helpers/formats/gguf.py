"""GGUF, the file format llama.cpp and Ollama run: its key/value metadata and Ollama-style details.

Stdlib only: the Ollama-API stand-in's image ships it.
"""
from __future__ import annotations

import struct
from pathlib import Path

# token types (llama.cpp's llama_token_type): which vocabulary entries are added tokens
CONTROL, USER_DEFINED = 3, 4
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
FILE_TYPES = {0: "F32", 1: "F16", 7: "Q8_0", 15: "Q4_K_M", 2: "Q4_0", 32: "BF16"}  # llama_ftype values


def read_metadata(path: Path, arrays: bool = False) -> dict:
    """The key/value metadata of a GGUF file (arrays as their length unless ``arrays``)."""
    with open(path, "rb") as f:
        def unpack(fmt):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string():
            return f.read(unpack("<Q")).decode("utf-8", errors="replace")

        def value(kind):
            if kind == _STRING:
                return string()
            if kind == _ARRAY:
                item, count = unpack("<I"), unpack("<Q")
                items = [value(item) for _ in range(count)]
                return items if arrays else count
            return unpack(_SCALARS[kind])

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        unpack("<I")  # version
        unpack("<Q")  # tensor count
        return {string(): value(unpack("<I")) for _ in range(unpack("<Q"))}


def describe(path: Path) -> dict:
    """Ollama-style details of a GGUF file: family, parameter size, quantisation level."""
    meta = read_metadata(path)
    arch = meta.get("general.architecture", "unknown")
    return {"parent_model": "", "format": "gguf", "family": arch, "families": [arch],
            "parameter_size": meta.get("general.size_label", "unknown"),
            "quantization_level": FILE_TYPES.get(meta.get("general.file_type", -1), str(meta.get("general.file_type")))}
