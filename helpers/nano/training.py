"""Training phi4-nano from scratch: ``make nano-train`` (the console script ``phi4-nano-train``).

The trained model is committed in ``helpers/data/phi4-nano/`` (weights, tokenizer, ``report.json``), so a
fresh machine loads it in seconds (``helpers.nano.phi4_nano``). This module is the recipe that made it: a
byte-level BPE tokenizer trained locally with Phi-4-mini's special tokens and chat template, a
``Phi3ForCausalLM`` with Phi-4-mini's architecture family at toy widths (docs/phi4-nano.md), trained on
``helpers.tasks.curriculum`` and graded on held-out tasks. ``recipe_key()`` hashes the recipe and the code the
weights are a function of; the committed report carries the key it was trained from, and
``tests/test_phi4_nano.py`` fails when the two differ.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import math
import shutil
import sys
import time
from pathlib import Path

from helpers.formats import chat_format
from helpers.nano import evaluation
from helpers.nano.report import format_report
from helpers.system import machine
from helpers.system.paths import content_key
from helpers.tasks import curriculum

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "phi4-nano"  # the committed weights

RECIPE = {
    "version": 6,
    "config": {  # Phi-4-mini's family at toy widths; head_dim 64 for onnxruntime-genai's GQA kernel
        "vocab_size": 4096, "hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "partial_rotary_factor": 0.75,
        "max_position_embeddings": 8192, "original_max_position_embeddings": 1024,
        "tie_word_embeddings": True, "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    },
    "tokenizer": {"vocab_size": 4096, "corpus_tasks": 30000},
    "train": {"seed": 0, "steps": 18000, "batch_size": 32, "lr": 2e-3, "floor": 0.02, "warmup": 200,
              "weight_decay": 0.01},
    "eval": {"per_family": 60, "every": 2000},
}


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


# ----------------------------------------------------------------------------- model and training

def make_config(tokenizer):
    """A ``Phi3Config`` for phi4-nano; longrope factors sized for the rotary dims."""
    from transformers import Phi3Config

    c = dict(RECIPE["config"])
    rotary_half = int(c["hidden_size"] // c["num_attention_heads"] * c["partial_rotary_factor"]) // 2
    long_factor = [round(1.0 + 3.0 * i / (rotary_half - 1), 4) for i in range(rotary_half)]
    end = tokenizer.convert_tokens_to_ids(chat_format.ENDOFTEXT)
    return Phi3Config(
        **c, rope_scaling={"type": "longrope", "short_factor": [1.0] * rotary_half, "long_factor": long_factor},
        bos_token_id=end, eos_token_id=end, pad_token_id=end, architectures=["Phi3ForCausalLM"],
        torch_dtype="float32",
    )


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


def train(model, tokenizer, steps: int, batch_size: int, lr: float, floor: float, warmup: int, weight_decay: float,
          seed: int, on_step=None, progress: bool = True) -> list[float]:
    """Train on the curriculum; the LM head and loss run only where an answer token is predicted. The rate warms
    up linearly, then follows a cosine from ``lr`` down to ``floor * lr``. ``on_step(step)`` runs after every step
    (the held-out curve)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    # Adam's moments of embedding rows whose tokens never occur decay below fp32's normal range within a few
    # thousand steps; computing on those subnormal numbers slowed training from 4 to 2 steps/s. Flush them to zero.
    torch.set_flush_denormal(True)
    batches = _family_batches(curriculum.training_stream(seed), batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (floor + (1 - floor) / 2 * (1 + math.cos(math.pi * s / steps))))
    losses = []
    bar = _tqdm(range(1, steps + 1), desc="training phi4-nano", disable=not progress, mininterval=5)
    for step in bar:
        model.train()
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
        if on_step:
            on_step(step)
    torch.set_flush_denormal(False)
    model.eval()
    return losses


# What the weights are a function of: the recipe, the curriculum and chat format, and this code.
WEIGHTS_CODE = [_masked, _stdlib_text, train_tokenizer, make_config, encode_task, _batch, _family_batches, train]


def _without_imports(module) -> str:
    """``module``'s source less its top-level import statements: what it computes, not where it lives."""
    source = inspect.getsource(module)
    lines = source.splitlines(keepends=True)
    imports = {i for node in ast.parse(source).body if isinstance(node, (ast.Import, ast.ImportFrom))
               for i in range(node.lineno - 1, node.end_lineno)}
    return "".join(line for i, line in enumerate(lines) if i not in imports)


def recipe_key() -> str:
    """Content hash of the recipe and the code that turns it into weights (not the Python or library versions:
    they are recorded in the report, and the committed weights serve every version the lab pins; not where
    the code lives either: moving a module keeps the key)."""
    chat = {"template": chat_format.CHAT_TEMPLATE, "special_tokens": chat_format.SPECIAL_TOKENS,
            "code": [inspect.getsource(f) for f in WEIGHTS_CODE], "curriculum": _without_imports(curriculum)}
    return content_key({**RECIPE, **chat})


# ----------------------------------------------------------------------------- build

LOSS_WINDOW = 10  # the report's loss_curve is the mean loss of every this many steps


def build(out_dir: Path, progress: bool = True) -> dict:
    """Train, grade and save phi4-nano into ``out_dir`` (a normal Hugging Face folder plus report.json)."""
    import torch
    import transformers
    from transformers import GenerationConfig, Phi3ForCausalLM

    from helpers.system.cpus import free_cpus

    key = recipe_key()  # before training: the code on disk may change while it runs
    threads = free_cpus()
    torch.set_num_threads(threads)  # oversubscribed threads on 2 shared cores ran 3x slower than one thread
    t0 = time.perf_counter()
    tokenizer = train_tokenizer(**RECIPE["tokenizer"])
    t_tok = time.perf_counter()
    torch.manual_seed(RECIPE["train"]["seed"])
    model = Phi3ForCausalLM(make_config(tokenizer))
    curve = []

    def heldout_curve(step: int) -> None:
        if step % RECIPE["eval"]["every"] == 0:
            model.eval()
            accuracy = evaluation.evaluate(model, tokenizer, RECIPE["eval"]["per_family"], progress=False)
            curve.append({"step": step, **{family: r["accuracy"] for family, r in accuracy.items()}})
            if progress:
                print(f"step {step}: " + ", ".join(f"{k} {v:.0%}" for k, v in curve[-1].items() if k != "step"),
                      file=sys.stderr, flush=True)

    losses = train(model, tokenizer, on_step=heldout_curve, progress=progress, **RECIPE["train"])
    t_train = time.perf_counter()
    accuracy = evaluation.evaluate(model, tokenizer, RECIPE["eval"]["per_family"], progress=progress)
    t_eval = time.perf_counter()
    model.generation_config = GenerationConfig(
        eos_token_id=evaluation.stop_token_ids(tokenizer), pad_token_id=tokenizer.pad_token_id, do_sample=False)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _mark_gpt2_tokenizer(out_dir)
    report = {
        "key": key, "params": sum(p.numel() for p in model.parameters()),
        "seconds": {"tokenizer": round(t_tok - t0, 1), "train": round(t_train - t_tok, 1),
                    "evaluate": round(t_eval - t_train, 1), "total": round(t_eval - t0, 1)},
        "threads": threads, "cpu": machine.cpu_model(), "torch": torch.__version__,
        "transformers": transformers.__version__, "python": sys.version.split()[0],
        "loss_first": losses[:10], "loss_last": losses[-10:],
        "loss_curve": [round(sum(losses[i:i + LOSS_WINDOW]) / len(losses[i:i + LOSS_WINDOW]), 4)
                       for i in range(0, len(losses), LOSS_WINDOW)],
        "heldout_curve": curve, "accuracy": accuracy,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _mark_gpt2_tokenizer(folder: Path) -> None:
    """Declare the tokenizer GPT-2 style, which llama.cpp's converter needs (helpers/models/gguf_convert.py)."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "GPT2Tokenizer"
    path.write_text(json.dumps(config, indent=2))


def compare(new: dict, old: dict | None) -> str:
    """How a fresh build's held-out accuracy compares with the committed one's, and from which step its loss
    curve parts from the committed run's (same recipe and CPU kind: never; another CPU kind: within a few
    hundred steps, docs/phi4-nano.md)."""
    if not old:
        return "no committed report to compare with"
    rows = [f"{family:<14}{old['accuracy'].get(family, {}).get('accuracy', float('nan')):>10.1%}"
            f"{r['accuracy']:>10.1%}" for family, r in new["accuracy"].items()]
    same = all(old["accuracy"].get(f, {}).get("accuracy") == r["accuracy"] for f, r in new["accuracy"].items())
    if old["key"] != new["key"]:
        verdict = "differs from the committed report (its recipe differs)"
    else:
        parted = next((LOSS_WINDOW * i for i, (a, b) in enumerate(zip(new["loss_curve"], old["loss_curve"]))
                       if a != b), None)
        verdict = ("same accuracies as the committed report" if same else "differs from the committed report") + (
            "; the loss curves are identical" if parted is None else
            f"; the loss curves part after step {parted:,} (committed: {old['cpu']}, {old['threads']} threads;"
            f" this run: {new['cpu']}, {new['threads']} threads)")
    return "\n".join([f"{'family':<14}{'committed':>10}{'this run':>10}", *rows, verdict])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED,
                        help="where the trained folder goes (default: the committed helpers/data/phi4-nano)")
    args = parser.parse_args(argv)
    old = json.loads((args.out / "report.json").read_text()) if (args.out / "report.json").exists() else None
    tmp = args.out.parent / f".{args.out.name}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    report = build(tmp)
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    print(format_report(report))
    print(compare(report, old))

