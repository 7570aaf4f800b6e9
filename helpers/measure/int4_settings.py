"""``slm-lab-int4``: onnxruntime-genai's int4 settings measured on a model — block size, accuracy level (4: the
activations quantised to int8 as well; 1: fp32 activations) and quantisation algorithm (RTN, k-quant) — for
size, single-stream decode speed and greedy agreement with transformers in fp32 on the model's task suite and
held-out curriculum prompts, beside llama.cpp on the model's GGUF (what the Ollama stand-in serves). Prints the
table and saves it under runs/; the model card's ``int4_options`` take the best trade-off, and notebook 03 builds
``genai-int4`` with them.

    slm-lab-int4 --model qwen2.5-coder-0.5b
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

from helpers import models
from helpers.clients import ollama_api
from helpers.formats.markdown import markdown_table
from helpers.measure import onnx_parity, reference, task_suite
from helpers.models import onnx_convert
from helpers.system import machine
from helpers.system.cpus import available_cpus
from helpers.system.paths import RUNS
from helpers.tasks import curriculum

RECORDED = Path(__file__).resolve().parents[1] / "data" / "int4-settings"  # <model key>.json: sweeps kept in the repo
SETTINGS = [{"algo_config": algo, "block_size": block, "accuracy_level": level}
            for algo in ("rtn", "k_quant") for block in (32, 128) for level in (4, 1)]


def prompts(card) -> list[dict]:
    """The card's task suite and five held-out tasks of every curriculum family, as chat prompt ids."""
    tokenizer = reference.load_tokenizer(card.hf_folder(progress=False))
    tasks = {t.key: t for t in task_suite.suite(card) + curriculum.heldout_set(5)}
    return [{"name": key, "ids": reference.prompt_ids(tokenizer, ollama_api.messages(t.messages), t.tools)}
            for key, t in tasks.items()]


def agreement(expected: list[int], got: list[int]) -> float:
    """The share of greedy tokens that agree before the first difference."""
    same = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
    return same / max(len(expected), len(got), 1)


def error_row(setting: str, error: str) -> dict:
    """A row for a setting that failed: the last line of its error."""
    return {"setting": setting, "error": error.strip().splitlines()[-1][:200]}


def measure(card, settings: list[dict], tokens: int, progress: bool = True) -> list[dict]:
    """One row per setting, transformers fp32 first and llama.cpp on the card's GGUF last: MB, decode tok/s, and how
    many prompts' greedy tokens equal transformers' (all ``tokens`` of them)."""
    from tqdm.auto import tqdm

    src, chats = card.hf_folder(progress=False), prompts(card)
    work = Path(tempfile.mkdtemp(prefix="int4-"))
    try:
        ref = onnx_parity.measure("pytorch", src, chats, work / "reference", tokens, card.reference_dtype,
                                  with_logits=False)
        rows = [{"setting": f"transformers {card.reference_dtype}", "decode tok/s": ref["decode_tok_s"],
                 "prompts identical": f"{len(chats)} of {len(chats)}"}]

        def row(name: str, kind: str, folder: Path, size: int, **extra) -> dict:
            got = onnx_parity.measure(kind, folder, chats, work / "run", tokens, with_logits=False)
            if "error" in got:
                return error_row(name, got["error"])
            same = [agreement(a, b) for a, b in zip(ref["tokens"], got["tokens"])]
            return {"setting": name, "MB": round(size / 1e6), **extra, "decode tok/s": got["decode_tok_s"],
                    "prompts identical": f"{sum(s == 1.0 for s in same)} of {len(same)}",
                    "greedy match": round(sum(same) / len(same), 3)}

        for setting in tqdm(settings, desc="int4 settings", disable=not progress):
            out, start = work / "model", time.perf_counter()
            name = ", ".join(f"{k}={v}" for k, v in setting.items())
            try:
                onnx_convert.build_genai(src, out, "int4", work / "cache", setting)
            except RuntimeError as err:  # a setting this builder cannot build is a finding, not the end
                rows.append(error_row(name, str(err)))
                shutil.rmtree(out, ignore_errors=True)
                continue
            built = round(time.perf_counter() - start)
            rows.append(row(name, "genai", out, onnx_convert.folder_size(out), **{"build s": built}))
            shutil.rmtree(out)
        gguf = card.gguf(progress=False)
        rows.append(row(f"llama.cpp, {gguf.name}", "llamacpp", gguf, gguf.stat().st_size))
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def recorded(card) -> dict | None:
    """The sweep ``slm-lab-int4`` saved for ``card`` and the repository keeps (model, date, machine, rows), or None."""
    path = RECORDED / f"{card.key}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--tokens", type=int, default=24, help="greedy tokens compared per prompt")
    parser.add_argument("--card-only", action="store_true", help="only the card's int4_options (beside llama.cpp)")
    args = parser.parse_args(argv)
    card = models.get(args.model)
    rows = measure(card, [card.int4_options] if args.card_only else SETTINGS, args.tokens)
    print(markdown_table(rows))
    path = RUNS / f"int4-settings-{card.key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    about = f"{platform.system()} {machine.architecture()}, {available_cpus()} CPUs ({machine.cpu_model()})"
    path.write_text(json.dumps({"model": card.key, "date": time.strftime("%Y-%m-%d"), "machine": about,
                                "tokens": args.tokens, "rows": rows}, indent=1))
    print(f"saved {path}; to keep it with the lab, copy it to {RECORDED / path.name.removeprefix('int4-settings-')}")


if __name__ == "__main__":
    main()
