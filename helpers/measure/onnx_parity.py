"""Compare every ONNX variant of a model with the PyTorch model it came from.

Each variant (and PyTorch itself) is measured in a fresh subprocess, so its load
time and peak memory are its own: full-prompt logits on a fixed prompt set, then
up to ``new_tokens`` greedy tokens per prompt, and ``new_tokens`` forced tokens
timed for decode speed. The parent compares with PyTorch: max |Δlogit| on prompts
within ``original_max_position_embeddings`` and (for longrope models) on a long one,
argmax agreement over all prompt positions, and the share of greedy tokens that
match before the first difference.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from helpers.tasks import curriculum
from helpers.models.onnx_convert import VARIANTS, conversion_log

# How each is loaded; measured in this order, "pytorch" (the reference) first.
KINDS = {"pytorch": "pytorch", **{v.name: v.kind for v in VARIANTS}}


def prompt_set(tokenizer, switch: int | None) -> list[dict]:
    """Chat prompts from the seed, plus for a longrope model one longer than ``switch``
    (original_max_position_embeddings), where longrope changes its factors."""
    chats = [[{"role": "user", "content": curriculum.SEED_TRAIN_QUESTION}],
             [{"role": "user", "content": curriculum.SEED_CODE_PROMPT}],
             [{"role": "user", "content": curriculum.SEED_TOOL_PROMPT}]]
    prompts = [{"name": name, "ids": tokenizer.apply_chat_template(chat, add_generation_prompt=True,
                                                                   **({"tools": [curriculum.CIRCLE_TOOL]} if name == "tool call" else {}))}
               for name, chat in zip(("reasoning", "coding", "tool call"), chats)]
    if not switch:
        return prompts
    filler = " ".join(f"Note {i}: the train left the station at {i % 12 + 1} o'clock." for i in range(4 * switch // 10))
    long_ids = tokenizer.apply_chat_template([{"role": "system", "content": filler},
                                              {"role": "user", "content": curriculum.SEED_TRAIN_QUESTION}],
                                             add_generation_prompt=True)
    long_ids = long_ids[-(switch + 200):]  # keep the end (the question), 200 tokens past the switch
    prompts.append({"name": f"long ({len(long_ids)} tokens)", "ids": long_ids})
    return prompts


# ----------------------------------------------------------------------------- runners (in the subprocess)
# Each loader returns (logits_of(ids) -> array [positions, vocab], greedy(ids, n, force) -> token ids).
# ``force`` generates exactly n tokens (EOS suppressed) for the speed figure; otherwise EOS stops.

def _hf_style(model):
    """``logits_of`` and ``greedy`` for a model with transformers' interface (PyTorch, or optimum's ORT model)."""
    import torch

    def logits_of(ids):
        x = torch.tensor([ids])
        with torch.no_grad():
            return model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0].float().numpy()

    def greedy(ids, n, force):
        x = torch.tensor([ids])
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n,
                             min_new_tokens=n if force else 0, do_sample=False)
        return out[0, len(ids):].tolist()
    return logits_of, greedy


def _load_pytorch(folder: Path, dtype: str = "float32"):
    import torch
    from transformers import AutoModelForCausalLM

    return _hf_style(AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).eval())


def _load_optimum(folder: Path, dtype: str = "float32"):
    from optimum.onnxruntime import ORTModelForCausalLM

    model = ORTModelForCausalLM.from_pretrained(folder, use_cache=True)
    # The export has 2 KV heads (GQA); without this, optimum sizes past_key_values for 4.
    model.num_key_value_heads = model.config.num_key_value_heads
    return _hf_style(model)


def load_genai(folder: Path, threads: int | None = None):
    """An onnxruntime-genai model whose session uses ``threads`` intra-op threads (default: the CPUs available,
    as the engine's session does). Left alone, ONNX Runtime sizes its pool by physical cores, and ran one
    thread on this 2-vCPU machine (docs/onnx.md)."""
    import onnxruntime_genai as og

    from helpers.system.cpus import thread_cpus

    config = og.Config(str(folder))
    options = {"intra_op_num_threads": threads or len(thread_cpus())}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
    return og.Model(config)


def _load_genai(folder: Path, dtype: str = "float32"):
    import onnxruntime_genai as og

    model = load_genai(folder)  # as many threads as PyTorch uses here, as the engine does

    def start(ids, n, force):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + n, min_length=len(ids) + n if force else 0, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(np.array([ids], dtype=np.int32))
        return generator

    def logits_of(ids):
        return np.array(start(ids, 1, False).get_output("logits"))[0]

    def greedy(ids, n, force):
        generator, tokens = start(ids, n, force), []
        while not generator.is_done():
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
        return tokens
    return logits_of, greedy


def _load_llamacpp(gguf: Path, dtype: str = "float32"):
    """llama.cpp (xllamacpp, the Ollama-API stand-in's engine) on a GGUF file: greedy token ids from its completion
    API (each token's id rides in its logprobs); its logits are not compared."""
    import xllamacpp

    from helpers.formats.gguf import read_metadata
    from helpers.system.cpus import thread_cpus

    meta = read_metadata(gguf)
    arch = meta["general.architecture"]
    # a longrope model's context stays within its original one: above it llama.cpp applies the long factors to
    # every position (as vLLM does), and the answers are another model's
    context = meta.get(f"{arch}.rope.scaling.original_context_length") or min(meta[f"{arch}.context_length"], 4096)
    params = xllamacpp.CommonParams()
    params.model.path, params.n_ctx, params.n_parallel, params.warmup = str(gguf), int(context), 1, False
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = len(thread_cpus())
    server = xllamacpp.Server(params)

    def logits_of(ids):
        raise NotImplementedError("llama.cpp's logits are not compared: measure it with with_logits=False")

    def greedy(ids, n, force):
        chunks = []
        server.handle_completions({"prompt": ids, "n_predict": n, "temperature": 0, "top_k": 1, "repeat_penalty": 1.0,
                                   "logprobs": 1, "ignore_eos": force, "cache_prompt": False}, chunks.append)
        return [token["id"] for chunk in chunks for choice in chunk.get("choices", [])
                for token in (choice.get("logprobs") or {}).get("content", [])]
    return logits_of, greedy


LOADERS = {"pytorch": _load_pytorch, "optimum": _load_optimum, "genai": _load_genai, "llamacpp": _load_llamacpp}


def _measure(kind: str, folder: Path, prompts_file: Path, out: Path, new_tokens: int, dtype: str,
             with_logits: bool = True) -> None:
    """Subprocess body: run one variant, save logits (unless not wanted)/tokens/timings to ``out`` (.npz + .json)."""
    prompts = json.loads(prompts_file.read_text())
    start = time.perf_counter()
    logits_of, greedy = LOADERS[kind](folder, dtype)
    load_s = time.perf_counter() - start
    logits = [logits_of(ids).astype(np.float32) for ids in prompts] if with_logits else []
    tokens = [greedy(ids, new_tokens, force=False) for ids in prompts]
    greedy(prompts[0], 8, force=True)  # warm-up
    start = time.perf_counter()
    forced = greedy(prompts[0], new_tokens, force=True)
    decode_s = time.perf_counter() - start
    np.savez(out.with_suffix(".npz"), *logits)
    out.with_suffix(".json").write_text(json.dumps({
        "load_s": round(load_s, 3), "decode_tok_s": round(len(forced) / decode_s, 1),
        "peak_rss_mb": _peak_rss_mb(), "tokens": tokens}))


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the
    parent through fork and exec, so a child of a big kernel would report the kernel's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


# ----------------------------------------------------------------------------- comparison (in the kernel)

def measure(kind: str, folder: Path, prompts: list[dict], work: Path, new_tokens: int, dtype: str = "float32",
            with_logits: bool = True) -> dict:
    """Run one variant in a fresh Python; returns its timings, tokens and logits (or an error). ``with_logits``
    False: tokens and timings only (a real model's logits over many prompts take gigabytes)."""
    work.mkdir(parents=True, exist_ok=True)
    prompts_file = work / "prompts.json"
    prompts_file.write_text(json.dumps([p["ids"] for p in prompts]))
    out = work / folder.name
    result = subprocess.run([sys.executable, "-m", "helpers.measure.onnx_parity", kind, str(folder), str(prompts_file),
                             str(out), str(new_tokens), dtype, str(int(with_logits))], capture_output=True, text=True)
    if result.returncode != 0:
        last = [line for line in result.stderr.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        return {"error": last[0][:300]}
    data = json.loads(out.with_suffix(".json").read_text())
    with np.load(out.with_suffix(".npz")) as npz:
        data["logits"] = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    return data


def compare(reference: dict, variant: dict, switch: int | None) -> dict:
    """Parity of ``variant`` with ``reference``: max |Δlogit| on prompts up to ``switch`` tokens and on
    longer ones (where longrope's long factors apply to every position), argmax and greedy agreement."""
    switch = switch or 1 << 62  # no longrope: every prompt counts as short
    short, long, greedy, greedy_short = 0.0, 0.0, [], []
    agree = {"short": [0, 0], "long": [0, 0]}  # [argmax equal, positions]
    for ref, got, ref_tokens, tokens in zip(reference["logits"], variant["logits"], reference["tokens"],
                                            variant["tokens"]):
        diff = float(np.abs(ref - got).max())
        if len(ref) > switch:
            long = max(long, diff)
        else:
            short = max(short, diff)
        counts = agree["long" if len(ref) > switch else "short"]
        counts[0] += int((ref.argmax(-1) == got.argmax(-1)).sum())
        counts[1] += len(ref)
        same = next((i for i, (a, b) in enumerate(zip(ref_tokens, tokens)) if a != b), min(len(ref_tokens), len(tokens)))
        greedy.append(same / max(len(ref_tokens), len(tokens), 1))
        if len(ref) <= switch:
            greedy_short.append(greedy[-1])
    return {"max_dlogit": round(short, 6), "max_dlogit_long": round(long, 6),
            "argmax_agreement": round(agree["short"][0] / max(agree["short"][1], 1), 4),
            "argmax_agreement_long": round(agree["long"][0] / max(agree["long"][1], 1), 4),
            "greedy_match": round(float(np.mean(greedy)), 4),
            "greedy_match_short": round(float(np.mean(greedy_short)), 4),
            "greedy_match_per_prompt": [round(g, 3) for g in greedy]}


def parity_table(card, onnx_folder: Path, prompts: list[dict], new_tokens: int | None = None,
                 progress: bool = True) -> list[dict]:
    """One row per variant of ``card`` (PyTorch first): size, load time, tok/s, peak memory and parity."""
    import tempfile

    from tqdm.auto import tqdm

    work = Path(tempfile.mkdtemp(prefix="parity-"))
    log = conversion_log(onnx_folder)["variants"]
    model_folder, new_tokens = card.hf_folder(progress=False), new_tokens or card.budget.parity_tokens
    rows, reference = [], None
    for name in tqdm(["pytorch", *log], desc="measuring", disable=not progress):
        folder = model_folder if name == "pytorch" else onnx_folder / name
        row = {"variant": name}
        if name != "pytorch" and "error" in log[name]:
            rows.append({**row, "error": "conversion: " + log[name]["error"][:200]})
            continue
        result = measure(KINDS[name], folder, prompts, work, new_tokens, card.reference_dtype)
        if "error" in result:
            rows.append({**row, "error": "load/run: " + result["error"]})
            continue
        reference = reference or result
        size = sum(p.stat().st_size for p in folder.glob("*.safetensors")) if name == "pytorch" else log[name]["bytes"]
        rows.append({**row, "size_mb": round(size / 1e6, 2), "load_s": result["load_s"],
                     "decode_tok_s": result["decode_tok_s"], "peak_rss_mb": result["peak_rss_mb"],
                     **compare(reference, result, card.longrope_switch)})
    shutil.rmtree(work, ignore_errors=True)
    return rows


def plot_tradeoffs(rows: list[dict]):
    """Size vs decode speed (colour: argmax agreement), and max |Δlogit| per variant (log scale)."""
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "error" not in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    points = left.scatter([r["size_mb"] for r in ok], [r["decode_tok_s"] for r in ok], s=90, cmap="viridis",
                          c=[r["argmax_agreement"] for r in ok], vmin=0.5, vmax=1.0, edgecolors="black")
    for r in ok:
        left.annotate(r["variant"], (r["size_mb"], r["decode_tok_s"]), textcoords="offset points", xytext=(6, 4))
    left.set(xlabel="weights on disk (MB)", ylabel="decode tokens/s (1 stream)", title="size vs speed")
    fig.colorbar(points, ax=left, label="argmax agreement with PyTorch")
    names = [r["variant"] for r in ok if r["variant"] != "pytorch"]
    x = np.arange(len(names))
    floor = 1e-7  # a log axis cannot show 0
    series = [("max_dlogit", "prompts within the original context")]
    if any(r.get("max_dlogit_long") for r in ok):
        series.append(("max_dlogit_long", "the long prompt (longrope's long factors)"))
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        right.bar(x + (i - (len(series) - 1) / 2) * width, [max(next(r[key] for r in ok if r["variant"] == n), floor)
                                                          for n in names], width, label=label)
    right.set(yscale="log", ylabel="max |Δlogit| vs PyTorch", title="parity")
    right.set_xticks(x, names, rotation=20)
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def findings(card, rows: list[dict]) -> str:
    """What ``parity_table``'s rows say, in Markdown, written from the rows themselves: only the variants this
    run built, their own numbers, and longrope only for a model that has it."""
    by_name = {r["variant"]: r for r in rows}
    ok = {n: r for n, r in by_name.items() if "error" not in r and n != "pytorch"}
    lines = []
    fp32 = [n for n in ok if n.endswith("fp32")]
    for name in fp32:
        r = ok[name]
        verdict = "gives PyTorch's greedy tokens" if r["greedy_match"] == 1.0 else (
            f"matches PyTorch's greedy tokens on {r['greedy_match']:.0%} of them")
        lines.append(f"- **{name}** {verdict}; its logits differ by at most {r['max_dlogit']:.1e} (float rounding, "
                     f"which grows with depth: {card.title} has its own layer count).")
    base = ok.get("genai-fp32") or next(iter(ok.values()), None)
    for name, r in ok.items():
        if name in fp32 or base is None:
            continue
        lines.append(f"- **{name}**: {r['size_mb']:,.0f} MB (fp32: {base['size_mb']:,.0f}), {r['decode_tok_s']:,.1f} "
                     f"tok/s (fp32: {base['decode_tok_s']:,.1f}); greedy tokens equal PyTorch's for "
                     f"{r['greedy_match']:.0%} of them, argmax agreement {r['argmax_agreement']:.1%}, max |Δlogit| "
                     f"{r['max_dlogit']:.2g}.")
    if card.longrope_switch and "optimum-fp32" in ok and "genai-fp32" in ok:
        optimum, genai = ok["optimum-fp32"], ok["genai-fp32"]
        lines.append(
            f"- **Past the longrope switch point ({card.longrope_switch} tokens)** the optimum export's logits move by "
            f"{optimum['max_dlogit_long']:.3g} and genai's by {genai['max_dlogit_long']:.2g}: at trace time the exporter "
            "evaluated `seq_len > original_max_position_embeddings` once, for its short dummy input, and baked the short "
            "rotary factors into the graph; onnxruntime-genai's builder implements longrope in its attention operator "
            "and follows PyTorch.")
    for name, r in by_name.items():
        if "error" in r:
            lines.append(f"- **{name}** could not be used here: {r['error'][:200]}")
    return "\n".join(lines)


if __name__ == "__main__":
    _measure(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), sys.argv[6],
             sys.argv[7] == "1")
