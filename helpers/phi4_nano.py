"""phi4-nano: a tiny model with Phi-4-mini's architecture, trained by this lab and shipped with it.

The trained folder is committed in ``helpers/phi4-nano/``: a normal Hugging Face model folder (config,
generation config, safetensors, tokenizer, chat template) plus ``report.json`` with the training and
held-out figures and the hash of the recipe it was trained from. ``load()`` takes seconds; it refuses
weights whose recipe hash is not the current recipe's (``helpers.nano_train``, ``make nano-train``).

Run ``python -m helpers.phi4_nano`` to print the report; ``helpers.nano_card`` presents it.
"""
from __future__ import annotations

import json
from pathlib import Path

from helpers import chat_format, curriculum, grading

SHIPPED = Path(__file__).resolve().parent / "phi4-nano"  # the committed weights
MAX_NEW_TOKENS = {"default": 64, "coding": 96, "seed": 160}  # a sum worked digit by digit is ~50 tokens


class RecipeMismatch(RuntimeError):
    """The committed weights were trained from another recipe than the current one."""


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn (``<|end|>``, ``<|endoftext|>``)."""
    return [tokenizer.convert_tokens_to_ids(t) for t in (chat_format.END, chat_format.ENDOFTEXT)]


# ----------------------------------------------------------------------------- generation and grading

def generate(model, tokenizer, conversations, max_new_tokens: int = 48, batch_size: int = 32) -> list[str]:
    """Greedy completions (special tokens kept) of (messages, tools) pairs, batched with left padding."""
    import torch

    outputs = []
    tokenizer.padding_side = "left"
    for i in range(0, len(conversations), batch_size):
        prompts = [tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
                   for messages, tools in conversations[i:i + batch_size]]
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id)
        for row in out[:, batch["input_ids"].shape[1]:]:
            text = tokenizer.decode(row, skip_special_tokens=False)
            outputs.append(text.split(chat_format.END)[0].replace(chat_format.ENDOFTEXT, ""))
    return outputs


def chat(model, tokenizer, messages: list[dict], tools: list[dict] | None = None, max_new_tokens: int = 160) -> str:
    """phi4-nano's greedy reply to one conversation (tool calls left in Phi-4-mini's text form)."""
    return generate(model, tokenizer, [(messages, tools)], max_new_tokens)[0]


def evaluate(model, tokenizer, per_family: int, progress: bool = True) -> dict:
    """Held-out accuracy per family, plus the seed prompts, with up to 3 failures each."""
    from tqdm.auto import tqdm

    tasks = curriculum.heldout_set(per_family) + curriculum.seed_tasks()
    report = {}
    families = sorted({t.family for t in tasks})
    for family in tqdm(families, desc="grading held-out tasks", disable=not progress):
        subset = [t for t in tasks if t.family == family]
        texts = generate(model, tokenizer, [(t.messages, t.tools) for t in subset],
                         MAX_NEW_TOKENS.get(family, MAX_NEW_TOKENS["default"]))
        graded = [grading.grade(t, text) for t, text in zip(subset, texts)]
        failures = [{"prompt": t.messages[-1]["content"], "answer": text, "why": why}
                    for t, text, (ok, why) in zip(subset, texts, graded) if not ok]
        report[family] = {"n": len(subset), "accuracy": round(sum(ok for ok, _ in graded) / len(subset), 3),
                          "failures": failures[:3]}
    return report


# ----------------------------------------------------------------------------- the committed model

def model_dir() -> Path:
    """The committed phi4-nano folder, after checking that it was trained from the current recipe."""
    from helpers.nano_train import recipe_key

    report_file = SHIPPED / "report.json"
    if not report_file.exists():
        raise RecipeMismatch(f"{SHIPPED} holds no trained phi4-nano: run `make nano-train` (docs/phi4-nano.md)")
    trained, current = json.loads(report_file.read_text())["key"], recipe_key()
    if trained != current:
        raise RecipeMismatch(
            f"the committed phi4-nano ({SHIPPED}) was trained from recipe {trained}, but helpers/nano_train.py "
            f"and helpers/curriculum.py now describe recipe {current}: run `make nano-train` to retrain it "
            "(about an hour on 2 cores) and commit helpers/phi4-nano/, or undo the change to the recipe")
    return SHIPPED


def load():
    """(model, tokenizer, folder) of the committed phi4-nano."""
    from transformers import AutoTokenizer, Phi3ForCausalLM

    folder = model_dir()
    return Phi3ForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder), folder


def report(folder: Path | None = None) -> dict:
    """The training report saved beside the weights."""
    return json.loads(((folder or model_dir()) / "report.json").read_text())


if __name__ == "__main__":
    from helpers.nano_card import format_report
    print(format_report(report(model_dir())))
