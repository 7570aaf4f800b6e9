"""phi4-nano's generation and held-out grading: what training measures as it goes and the committed model is
judged by."""
from __future__ import annotations

from helpers.formats import chat_format
from helpers.tasks import curriculum, grading

MAX_NEW_TOKENS = {"default": 64, "coding": 96, "seed": 160}  # a sum worked digit by digit is ~50 tokens


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn (``<|end|>``, ``<|endoftext|>``)."""
    return [tokenizer.convert_tokens_to_ids(t) for t in (chat_format.END, chat_format.ENDOFTEXT)]


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
