"""phi4-nano: a tiny model with Phi-4-mini's architecture, built and trained offline.

``load()`` returns the cached build (seconds) or builds it (a few minutes on 2
cores): a byte-level BPE tokenizer trained locally with Phi-4-mini's special
tokens and chat template, a ``Phi3ForCausalLM`` with Phi-4-mini's architecture
family at toy widths (docs/phi4-nano.md), trained on ``helpers.curriculum``,
then graded on held-out tasks. The folder it returns is a normal Hugging Face
model folder (config, generation config, safetensors, tokenizer, chat template)
plus ``report.json`` with the training and accuracy figures.

Run ``python -m helpers.phi4_nano`` to build (if needed) and print the report;
``helpers.nano_card`` presents it (kept apart: editing it does not change the cache key).
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from helpers import chat_format, curriculum, grading
from helpers.paths import build_once, cache_dir, content_key

RECIPE = {
    "version": 1,
    "config": {  # Phi-4-mini's family at toy widths; head_dim 64 for onnxruntime-genai's GQA kernel
        "vocab_size": 4096, "hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "partial_rotary_factor": 0.75,
        "max_position_embeddings": 8192, "original_max_position_embeddings": 1024,
        "tie_word_embeddings": True, "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    },
    "tokenizer": {"vocab_size": 4096, "corpus_tasks": 30000},
    "train": {"seed": 0, "steps": 1250, "batch_size": 32, "lr": 3e-3, "warmup": 50, "weight_decay": 0.01},
    "eval": {"per_family": 60},
}
# The build's code: the model is a function of these (the chat format enters as its template and tokens).
SOURCES = [Path(__file__), Path(curriculum.__file__)]
MAX_NEW_TOKENS = {"coding": 96, "seed": 160}


def _tqdm(*args, **kwargs):
    from tqdm.auto import tqdm
    return tqdm(*args, **kwargs)


# ----------------------------------------------------------------------------- tokenizer

def _masked(text: str) -> str:
    """``text`` with every digit blanked, so that no BPE merge contains a digit."""
    return "".join(" " if ch.isdigit() else ch for ch in text)


# Plain Python and English prose beyond the curriculum, so the BPE fills its vocabulary.
STDLIB_MODULES = ["textwrap", "string", "random", "statistics", "fractions", "calendar", "argparse",
                  "dataclasses", "functools", "heapq", "bisect", "shutil", "pathlib", "inspect",
                  "json.decoder", "json.encoder", "difflib", "pprint", "glob", "fnmatch", "tempfile"]


def _stdlib_text() -> list[str]:
    import importlib
    return [Path(importlib.import_module(name).__file__).read_text() for name in STDLIB_MODULES]


def train_tokenizer(vocab_size: int, corpus_tasks: int):
    """A GPT-2-style byte-level BPE tokenizer with Phi-4-mini's special tokens and chat template.

    Digits stay single tokens in every backend: the BPE never sees a digit, and
    llama.cpp's GPT-2 pre-tokenizer splits numbers from letters the same way.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=chat_format.SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    text = [_masked(line) for line in curriculum.corpus_lines(corpus_tasks) + _stdlib_text()]
    bpe.train_from_iterator(text, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token=chat_format.ENDOFTEXT, pad_token=chat_format.ENDOFTEXT,
        unk_token=None, bos_token=None, additional_special_tokens=chat_format.SPECIAL_TOKENS[1:],
        model_input_names=["input_ids", "attention_mask"], chat_template=chat_format.CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False, model_max_length=RECIPE["config"]["max_position_embeddings"],
    )


# ----------------------------------------------------------------------------- model

def make_config(tokenizer):
    """A ``Phi3Config`` for phi4-nano; longrope factors sized for the rotary dims."""
    from transformers import Phi3Config

    c = dict(RECIPE["config"])
    rotary_half = int(c["hidden_size"] // c["num_attention_heads"] * c["partial_rotary_factor"]) // 2
    long_factor = [round(1.0 + 3.0 * i / (rotary_half - 1), 4) for i in range(rotary_half)]
    return Phi3Config(
        **c, rope_scaling={"type": "longrope", "short_factor": [1.0] * rotary_half, "long_factor": long_factor},
        bos_token_id=tokenizer.convert_tokens_to_ids(chat_format.ENDOFTEXT),
        eos_token_id=tokenizer.convert_tokens_to_ids(chat_format.ENDOFTEXT),
        pad_token_id=tokenizer.convert_tokens_to_ids(chat_format.ENDOFTEXT),
        architectures=["Phi3ForCausalLM"], torch_dtype="float32",
    )


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids that end an assistant turn (``<|end|>``, ``<|endoftext|>``)."""
    return [tokenizer.convert_tokens_to_ids(t) for t in (chat_format.END, chat_format.ENDOFTEXT)]


def encode_task(tokenizer, task) -> tuple[list[int], int]:
    """Token ids of a task's prompt + answer + ``<|end|>``, and where the answer starts."""
    prompt = tokenizer.apply_chat_template(task.messages, tools=task.tools, add_generation_prompt=True,
                                           tokenize=True)
    answer = tokenizer.encode(task.answer, add_special_tokens=False)
    return prompt + answer + [tokenizer.convert_tokens_to_ids(chat_format.END)], len(prompt)


def _batch(tokenizer, tasks, pad_id):
    import torch

    encoded = [encode_task(tokenizer, t) for t in tasks]
    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    target = torch.zeros((len(encoded), width), dtype=torch.bool)  # positions that predict an answer token
    for row, (seq, start) in enumerate(encoded):
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
        target[row, start - 1:len(seq) - 1] = True
    return ids, mask, target


def _family_batches(stream, batch_size: int):
    """Batches of one family each (similar lengths, little padding), in the stream's mix."""
    pending: dict[str, list] = {}
    for task in stream:
        group = pending.setdefault(task.family, [])
        group.append(task)
        if len(group) == batch_size:
            yield pending.pop(task.family)


def train(model, tokenizer, steps: int, batch_size: int, lr: float, warmup: int, weight_decay: float,
          seed: int, progress: bool = True) -> list[float]:
    """Train on the curriculum; the LM head and loss run only where an answer token is predicted."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    batches = _family_batches(curriculum.training_stream(seed), batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, cosine decay to 10 %
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * s / steps))))
    losses = []
    model.train()
    bar = _tqdm(range(steps), desc="training phi4-nano", disable=not progress, mininterval=2)
    for _ in bar:
        ids, mask, target = _batch(tokenizer, next(batches), tokenizer.pad_token_id)
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model.lm_head(hidden[target])
        labels = ids[:, 1:][target[:, :-1]]
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 4))
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", refresh=False)
    model.eval()
    return losses


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
    tasks = curriculum.heldout_set(per_family) + curriculum.seed_tasks()
    report = {}
    families = sorted({t.family for t in tasks})
    for family in _tqdm(families, desc="grading held-out tasks", disable=not progress):
        subset = [t for t in tasks if t.family == family]
        texts = generate(model, tokenizer, [(t.messages, t.tools) for t in subset], MAX_NEW_TOKENS.get(family, 48))
        graded = [grading.grade(t, text) for t, text in zip(subset, texts)]
        failures = [{"prompt": t.messages[-1]["content"], "answer": text, "why": why}
                    for t, text, (ok, why) in zip(subset, texts, graded) if not ok]
        report[family] = {"n": len(subset), "accuracy": round(sum(ok for ok, _ in graded) / len(subset), 3),
                          "failures": failures[:3]}
    return report


# ----------------------------------------------------------------------------- build and cache

def recipe_key() -> str:
    """Content hash of the recipe and the code that implements it (the cache key)."""
    import transformers
    versions = {"transformers": transformers.__version__, "python": sys.version.split()[0]}
    chat = {"template": chat_format.CHAT_TEMPLATE, "special_tokens": chat_format.SPECIAL_TOKENS}
    return content_key({**RECIPE, **versions, **chat}, SOURCES)


def build(out_dir: Path, key: str, progress: bool = True) -> dict:
    """Build, train, grade and save phi4-nano into ``out_dir``; returns its report (named ``key``)."""
    import torch
    import transformers
    from transformers import GenerationConfig, Phi3ForCausalLM

    t0 = time.perf_counter()
    tokenizer = train_tokenizer(**RECIPE["tokenizer"])
    t_tok = time.perf_counter()
    torch.manual_seed(RECIPE["train"]["seed"])
    model = Phi3ForCausalLM(make_config(tokenizer))
    losses = train(model, tokenizer, progress=progress, **RECIPE["train"])
    t_train = time.perf_counter()
    accuracy = evaluate(model, tokenizer, RECIPE["eval"]["per_family"], progress=progress)
    t_eval = time.perf_counter()
    model.generation_config = GenerationConfig(
        eos_token_id=stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id, do_sample=False)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _mark_gpt2_tokenizer(out_dir)
    report = {
        "key": key, "params": sum(p.numel() for p in model.parameters()),
        "seconds": {"tokenizer": round(t_tok - t0, 1), "train": round(t_train - t_tok, 1),
                    "evaluate": round(t_eval - t_train, 1), "total": round(t_eval - t0, 1)},
        "threads": torch.get_num_threads(), "torch": torch.__version__, "transformers": transformers.__version__,
        "python": sys.version.split()[0], "loss_first": losses[:10], "loss_last": losses[-10:],
        "loss_curve": [round(sum(losses[i:i + 10]) / len(losses[i:i + 10]), 4) for i in range(0, len(losses), 10)], "accuracy": accuracy,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _mark_gpt2_tokenizer(folder: Path) -> None:
    """Declare the tokenizer GPT-2 style, which llama.cpp's converter needs (helpers/gguf_files.py)."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "GPT2Tokenizer"
    path.write_text(json.dumps(config, indent=2))


def model_dir(progress: bool = True) -> Path:
    """The cached phi4-nano folder for the current recipe, built first if missing."""
    final = cache_dir() / "phi4-nano" / recipe_key()
    return build_once(final, lambda tmp: build(tmp, final.name, progress=progress), done="report.json")


def load(progress: bool = True):
    """(model, tokenizer, folder) of phi4-nano, built and cached on first use."""
    from transformers import AutoTokenizer, Phi3ForCausalLM

    folder = model_dir(progress=progress)
    return Phi3ForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder), folder


def report(folder: Path | None = None) -> dict:
    """The training report saved beside the weights."""
    return json.loads(((folder or model_dir()) / "report.json").read_text())


if __name__ == "__main__":
    from helpers.nano_card import format_report
    print(format_report(report(model_dir())))
