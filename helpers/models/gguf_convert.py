"""Hugging Face folder -> GGUF (the file format llama.cpp and Ollama run).

The converter is llama.cpp's ``convert_hf_to_gguf.py`` with its own ``conversion/`` and
``gguf-py``, taken from the llama-cpp-python sdist on PyPI (the PyPI ``gguf`` package
does not match it). Only the converter is used: nothing is compiled.

Pitfalls for a locally trained BPE tokenizer (phi4-nano's), handled with ``custom_bpe``: the
converter recognises pre-tokenizers by hashing the tokens of a probe text, and a locally
trained vocabulary matches none, so ``get_vocab_base_pre`` is told it is GPT-2's (which it
is: byte-level BPE, GPT-2 pre-tokenizer); the tokenizer config names ``GPT2Tokenizer``;
and the model name must not contain "phi3" (llama.cpp would look up SentencePiece tokens
such as ``</s>`` that a BPE vocabulary lacks). A published checkpoint's tokenizer is
recognised by its hash and needs none of this.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from helpers.system.paths import build_once, cache_dir, content_key

LLAMA_CPP_PYTHON = "0.3.36"  # whose sdist vendors the converter
# its sha256 as PyPI publishes it: the converter that runs here is the one that was reviewed
LLAMA_CPP_PYTHON_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
# f16 halves the weights; Q8_0 quantises them to 8 bits in blocks of 32. K-quants (Q4_K_M,
# Ollama's default for phi4-mini) need llama.cpp's compiled llama-quantize, which no wheel
# installable here ships; the Python converter writes f32/f16/bf16/q8_0 only.
OUTTYPES = ("f16", "q8_0")

_RUN_CONVERTER = """
import runpy, sys
root, custom_bpe = sys.argv.pop(1), sys.argv.pop(1) == "1"
sys.path[:0] = [root, root + "/gguf-py"]
import conversion.base as base
if custom_bpe:  # a locally trained byte-level BPE with GPT-2's pre-tokenizer: no probe-text hash matches it
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv[0] = root + "/convert_hf_to_gguf.py"
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def converter_dir() -> Path:
    """llama.cpp's converter (with conversion/ and gguf-py/), unpacked from the sdist once."""
    def fetch(tmp: Path) -> None:
        with tempfile.TemporaryDirectory() as download:
            pinned = Path(download) / "requirements.txt"
            pinned.write_text(f"llama-cpp-python=={LLAMA_CPP_PYTHON} --hash=sha256:{LLAMA_CPP_PYTHON_SHA256}\n")
            result = subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
                                     "--no-deps", "--no-binary", ":all:", "--require-hashes", "-r", str(pinned),
                                     "-d", download], capture_output=True, text=True)
            if result.returncode:
                raise RuntimeError(f"cannot download the llama-cpp-python sdist:\n{result.stderr[-1500:]}")
            prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
            with tarfile.open(next(Path(download).glob("*.tar.gz"))) as sdist:
                wanted = [m for m in sdist.getmembers() if m.name.startswith(prefix) and (
                    m.name == prefix + "convert_hf_to_gguf.py" or m.name.startswith(prefix + "conversion/")
                    or m.name.startswith(prefix + "gguf-py/"))]
                for member in wanted:
                    member.name = member.name[len(prefix):]
                sdist.extractall(tmp, members=wanted, filter="data")
        (tmp / "READY").touch()

    return build_once(cache_dir() / "llama-cpp-convert" / LLAMA_CPP_PYTHON, fetch, done="READY")


def convert(src: Path, out: Path, outtype: str, name: str, custom_bpe: bool = False) -> Path:
    """``src`` (a Hugging Face folder) as a GGUF file of ``outtype``."""
    if custom_bpe and "phi3" in name.lower():
        raise ValueError("a GGUF model name containing 'phi3' makes llama.cpp expect SentencePiece tokens")
    result = subprocess.run([sys.executable, "-c", _RUN_CONVERTER, str(converter_dir()), "1" if custom_bpe else "0",
                             str(src), "--outtype", outtype,
                             "--outfile", str(out), "--model-name", name], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"convert_hf_to_gguf ({outtype}) failed:\n{result.stderr[-2500:]}")
    return out


def converted(src: Path, name: str, custom_bpe: bool = False, outtypes: tuple[str, ...] = OUTTYPES) -> dict[str, Path]:
    """GGUF files of ``src`` for every type in ``outtypes``, cached by content."""
    key = content_key({"llama-cpp-python": LLAMA_CPP_PYTHON, "outtypes": outtypes, "name": name, "custom_bpe": custom_bpe},
                      [Path(__file__), *sorted(p for p in src.iterdir() if p.is_file())])

    def build(tmp: Path) -> None:
        for outtype in outtypes:
            convert(src, tmp / f"{name}-{outtype}.gguf", outtype, name, custom_bpe)
        (tmp / "READY").touch()

    folder = build_once(cache_dir() / "gguf" / key, build, done="READY")
    return {outtype: folder / f"{name}-{outtype}.gguf" for outtype in outtypes}
