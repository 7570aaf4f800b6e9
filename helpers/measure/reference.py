"""The reference every backend is compared with: the model's Hugging Face folder in transformers, greedy,
one conversation at a time (as a server sees requests), special tokens kept so tool calls stay visible."""
from __future__ import annotations

from helpers.formats.tool_formats import PHI4_END, PHI4_START
from helpers.models.sources import load_tokenizer


def load(card, progress: bool = True):
    """(model, tokenizer) of ``card`` in transformers, in the card's reference dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    from helpers.system.cpus import thread_cpus

    torch.set_num_threads(len(thread_cpus()))  # the cores free now: a busy core would stall every matrix product
    folder = card.hf_folder(progress)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, card.reference_dtype))
    return model.eval(), load_tokenizer(folder)


def prompt_ids(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
    """The chat prompt's token ids, as ``apply_chat_template`` renders them (tools given as transformers does)."""
    return tokenizer.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True, tokenize=True)


def prompt_text(card, messages: list[dict], tools: list[dict] | None = None) -> str:
    """The chat prompt for ``card`` as text, rendered by its tokenizer's chat template (as the servers do)."""
    tokenizer = load_tokenizer(card.hf_folder(progress=False))
    return tokenizer.apply_chat_template(messages, tools=tools or None, add_generation_prompt=True, tokenize=False)


def chat(model, tokenizer, messages: list[dict], tools: list[dict] | None = None, max_new_tokens: int = 160) -> str:
    """The model's greedy answer: the text up to its end-of-turn token, special tokens other than
    Phi-4's tool-call markers removed (what a server's raw completion shows, before any tool parser)."""
    import torch

    ids = torch.tensor([prompt_ids(tokenizer, messages, tools)])
    stops = model.generation_config.eos_token_id
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
    new = out[0, ids.shape[1]:].tolist()
    stops = set(stops if isinstance(stops, list) else [stops])
    new = new[:next((i for i, t in enumerate(new) if t in stops), len(new))]
    text = tokenizer.decode(new, skip_special_tokens=False)
    for token in tokenizer.all_special_tokens:
        if token not in (PHI4_START, PHI4_END):
            text = text.replace(token, "")
    return text
