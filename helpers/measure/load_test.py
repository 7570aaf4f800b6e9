"""Load tests on a maintained tool: ``vllm bench serve`` (vLLM's serving benchmark) against any OpenAI-compatible
backend — a concurrency sweep, and a request-rate sweep (Poisson arrivals) doubled until the backend saturates,
each with goodput against stated latency objectives.

The tool runs where vLLM is: in the lab's vLLM virtualenv (local runtime) or in vLLM's image (docker runtime,
on the host's network). Prompts are random token sequences of a fixed length from the model's own tokenizer,
answers are greedy with EOS ignored where the server honours it (vLLM, the SLM Engine; Ollama's OpenAI endpoint
does not, so its answers may be shorter — the mean output length is in every row).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from pathlib import Path

from helpers import backends

OBJECTIVES_MS = {"ttft": 2000, "tpot": 200}  # a request meets them with TTFT ≤ 2 s and ≤ 200 ms per output token
TOOL = "vllm bench serve"
RUNNER = Path(__file__).with_name("bench_runs.py")  # runs a sweep's runs in one process of vLLM's Python
SATURATED_BELOW = 0.8  # a rate sweep stops at the first rate of which the backend served less than this share


def bench_args(base_url: str, model: str, tokenizer: str, result_dir: str, name: str, *, concurrency: int | None,
               rate: float, prompts: int, input_len: int, output_len: int, seed: int = 0, warmups: int = 1) -> list[str]:
    """``vllm bench serve``'s arguments for one run; ``seed`` picks its random prompts."""
    args = ["--backend", "openai-chat", "--base-url", base_url, "--endpoint", "/v1/chat/completions",
            "--model", model, "--tokenizer", tokenizer, "--dataset-name", "random",
            "--random-input-len", str(input_len), "--random-output-len", str(output_len),
            "--num-prompts", str(prompts), "--request-rate", "inf" if math.isinf(rate) else f"{rate:g}",
            "--temperature", "0", "--ignore-eos", "--extra-body", json.dumps({"max_tokens": output_len}),
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
            "--goodput", *[f"{k}:{v}" for k, v in OBJECTIVES_MS.items()], "--num-warmups", str(warmups),
            "--save-result", "--save-detailed", "--result-dir", result_dir, "--result-filename", name,
            "--disable-tqdm", "--seed", str(seed)]
    return args + (["--max-concurrency", str(concurrency)] if concurrency else [])


def row(result: dict, **label) -> dict:
    """One table row from ``vllm bench serve``'s result JSON; where requests failed, their first distinct errors."""
    completed, failed = result.get("completed", 0), result.get("failed", 0)
    errors = {"errors": sorted({e for e in result.get("errors") or [] if e})[:3]} if failed else {}
    return {**label, "req/s": round(result["request_throughput"], 3),
            "output tok/s": round(result["output_throughput"], 1),
            "goodput req/s": round(result.get("request_goodput") or 0.0, 3),
            "TTFT p50 ms": round(result["median_ttft_ms"]), "TTFT p99 ms": round(result["p99_ttft_ms"]),
            "ITL p50 ms": round(result["median_itl_ms"], 1), "ITL p99 ms": round(result["p99_itl_ms"], 1),
            "E2E p90 ms": round(result["p90_e2el_ms"]),
            "tokens out": round(result["total_output_tokens"] / max(1, completed), 1),
            "failed": failed, **errors}


class Bench:
    """``vllm bench serve`` on one runtime: the vLLM virtualenv's ``vllm``, or vLLM's image (its stand-in where
    no registry answers) on the host's network."""

    def __init__(self, runtime: str, card, progress: bool = True):
        self.runtime, self.card = runtime, card
        self.runs = 0  # each run's prompts are new: a server that caches prompt prefixes (vLLM, llama.cpp) would
        # skip the prompt pass of prompts it saw in an earlier run, and the SLM Engine caches none
        self.tokenizer = card.hf_folder(progress=False)
        vllm = backends.get("vllm")
        vllm.setup(runtime, progress)
        if runtime == "docker":
            from helpers.deploy import runtimes

            docker = runtimes.get("docker")
            spec = vllm.spec(card, "docker", False, Path("/model"))  # only its image: the tool ships in it
            self.client, self.image = docker.client, docker.ensure_image(spec, progress)
        else:
            from helpers.system import venvs

            self.python = str(venvs.venv_dir(vllm.local_venv) / "bin" / "python")

    def runs_in_one_process(self, base_url: str, runs: list[dict], saturated_below: float | None = None,
                            api_key: str | None = None) -> list[dict]:
        """The runs (``bench_args`` keywords each) in order, in one process of the tool (bench_runs.py); with
        ``saturated_below``, until one serves less than that share of its offered rate; ``api_key`` for a server that
        asks for one (the tool sends ``OPENAI_API_KEY``). Their result JSONs (raises with the tool's last output
        lines when it fails)."""
        plan_runs, tokenizer = [], "/tokenizer" if self.runtime == "docker" else str(self.tokenizer)
        with tempfile.TemporaryDirectory() as results:
            folder = "/results" if self.runtime == "docker" else results
            for i, kwargs in enumerate(runs):
                self.runs += 1
                plan_runs.append(bench_args(base_url, self.card.served_name, tokenizer, folder, f"{i}.json",
                                            **{"seed": self.runs, **kwargs}))
            plan = Path(results) / "plan.json"
            plan.write_text(json.dumps({"runs": plan_runs, "saturated_below": saturated_below}))
            env = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", **({"OPENAI_API_KEY": api_key} if api_key else {})}
            if self.runtime == "docker":
                self._run_in_image(results, env)
            else:
                done = subprocess.run([self.python, str(RUNNER), str(plan)], capture_output=True, text=True,
                                      env={**os.environ, **env})
                if done.returncode:
                    raise RuntimeError(f"{TOOL} failed:\n{(done.stdout + done.stderr)[-2000:]}")
            found = [Path(results) / f"{i}.json" for i in range(len(runs))]
            return [json.loads(f.read_text()) for f in found if f.exists()]

    def _run_in_image(self, results: str, env: dict) -> None:
        import docker

        from helpers.deploy.spec import LABEL, OWNER

        try:
            self.client.containers.run(
                self.image, ["/lab/bench_runs.py", "/results/plan.json"], entrypoint=["python3"], network_mode="host",
                remove=True, volumes={str(self.tokenizer): {"bind": "/tokenizer", "mode": "ro"},
                                      str(RUNNER): {"bind": "/lab/bench_runs.py", "mode": "ro"},
                                      results: {"bind": "/results", "mode": "rw"}},
                environment=env,
                labels={LABEL: "1", f"{LABEL}.backend": "vllm-bench", **OWNER})
        except docker.errors.ContainerError as error:
            output = (error.stderr or b"").decode(errors="replace")
            raise RuntimeError(f"{TOOL} failed in {self.image}:\n{output[-2000:]}") from None

    def concurrency_sweep(self, base_url: str, levels, input_len: int, output_len: int, per_level: int = 2,
                          api_key: str | None = None) -> list[dict]:
        """Closed loop: at most ``level`` requests in flight, ``per_level`` times as many requests as the level."""
        runs = [dict(concurrency=level, rate=math.inf, prompts=max(4, level * per_level), input_len=input_len,
                     output_len=output_len) for level in levels]
        results = self.runs_in_one_process(base_url, runs, api_key=api_key)
        return [row(result, concurrency=level) for level, result in zip(levels, results)]

    def rate_sweep(self, base_url: str, start: float, input_len: int, output_len: int, prompts: int = 12,
                   steps: int = 5) -> list[dict]:
        """Open loop: Poisson arrivals at ``start`` requests/s, doubled until the backend no longer keeps up (it
        completes less than 80 % of the offered rate: with a dozen Poisson arrivals the measured rate scatters)
        or ``steps`` rates were tried."""
        rates = [start * 2**i for i in range(steps)]
        runs = [dict(concurrency=None, rate=rate, prompts=prompts, input_len=input_len, output_len=output_len)
                for rate in rates]
        results = self.runs_in_one_process(base_url, runs, saturated_below=SATURATED_BELOW)
        return [row(result, **{"offered req/s": rate}) for rate, result in zip(rates, results)]


def sustainable_rate(rows: list[dict]) -> float:
    """The highest offered rate at which at least 80 % of it was served within the objectives (goodput); 0 if
    none was."""
    return max((r["offered req/s"] for r in rows if r["goodput req/s"] >= 0.8 * r["offered req/s"]), default=0.0)
