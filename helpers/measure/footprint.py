"""``slm-lab-footprint``: how much memory each backend really takes for a model, measured, for the model cards.

Starts each backend alone on one runtime, sends the most requests the lab sends at once (the card's
concurrency), each with a prompt of half the context, and samples the backend's memory (its process tree's
resident memory, or its container's usage) until the answers are in. Also the transformers reference in a
fresh Python (notebooks 00, 03 and 05 load it in the kernel). Prints a table beside the card's needs and
saves it as JSON under runs/. A figure of one machine: CPU builds of the same wheels take about the same
memory elsewhere, a GPU build does not.

    slm-lab-footprint --model qwen2.5-coder-0.5b --runtime local
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from helpers import backends, models
from helpers.deploy import runtimes
from helpers.formats.markdown import markdown_table
from helpers.system import machine
from helpers.system.cpus import available_cpus
from helpers.system.paths import RUNS

GB = 2**30


class PeakSampler:
    """The largest of ``read()`` over the life of a ``with`` block, sampled every ``interval`` seconds."""

    def __init__(self, read, interval: float = 0.25):
        self.read, self.interval, self.peak = read, interval, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._done.is_set():
            try:
                self.peak = max(self.peak, self.read())
            except Exception:  # a process that just ended, a container being removed
                pass
            self._done.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.read())


def load(client, card) -> int:
    """The card's concurrency of chat requests at once, each with a prompt of about half the context; returns
    how many answered."""
    from helpers.measure.reference import load_tokenizer

    tokenizer = load_tokenizer(card.hf_folder(progress=False))
    text = "the quick brown fox jumps over the lazy dog " * card.context
    prompt = "Summarise this text in one sentence: " + tokenizer.decode(tokenizer.encode(text)[:card.context // 2])
    messages = [{"role": "user", "content": prompt}]
    with ThreadPoolExecutor(card.budget.concurrency) as pool:
        replies = list(pool.map(lambda _: client.chat(messages, None, card.budget.bench_tokens),
                                range(card.budget.concurrency)))
    return sum(1 for r in replies if r.content or r.tool_calls)


def serving(card, name: str, runtime_name: str) -> dict:
    """Peak memory of ``name`` serving ``card`` on ``runtime_name``: started, loaded, stopped."""
    backend, runtime = backends.get(name), runtimes.get(runtime_name)
    path = backend.prepare(card, runtime_name)
    backend.setup(runtime_name)
    server = runtime.start(backend.spec(card, runtime_name, False, path), timeout=900)
    try:
        with PeakSampler(server.memory_bytes) as sampler:
            backend.provide(card, server.base_url)
            answered = load(backend.client(server.base_url, card), card)
        return {"backend": name, "form": ",".join(backend.needs), "runtime": runtime_name,
                "peak_gb": round(sampler.peak / GB, 2), "ready_s": round(server.ready_s, 1), "answered": answered}
    finally:
        server.stop()


REFERENCE = """
import json, sys
from pathlib import Path
from helpers import models
from helpers.measure import reference
card = models.get(sys.argv[1])
model, tokenizer = reference.load(card, progress=False)
reference.chat(model, tokenizer, [{"role": "user", "content": "What is 17 + 25?"}], max_new_tokens=32)
peak = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
print(json.dumps({"peak_gb": round(peak * 1024 / 2**30, 2)}))
"""


def transformers_reference(card) -> dict:
    """Peak resident memory (VmHWM) of a fresh Python that loads the reference and answers one prompt."""
    out = subprocess.run([sys.executable, "-c", REFERENCE, card.key], capture_output=True, text=True, check=True)
    return {"backend": "transformers", "form": "transformers", "runtime": "local",
            **json.loads(out.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT, choices=sorted(models.MODELS))
    parser.add_argument("--runtime", default="local", choices=list(machine.RUNTIMES))
    parser.add_argument("--backends", nargs="+", default=list(backends.BACKENDS), choices=list(backends.BACKENDS))
    args = parser.parse_args(argv)
    card = models.get(args.model)
    rows = [serving(card, name, args.runtime) for name in args.backends]
    if args.runtime == "local":
        rows.append(transformers_reference(card))
    for row in rows:
        row["card_gb"] = card.needs[row["form"].split(",")[-1]].ram
    print(markdown_table(rows))
    about = {"model": card.key, "runtime": args.runtime, "machine": f"{platform.system()} {machine.architecture()}",
             "cpus": available_cpus(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    path = RUNS / f"footprint-{card.key}-{args.runtime}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(about, indent=1))
    print("saved", path)


if __name__ == "__main__":
    main()
