"""Load tests on vllm bench serve: its arguments, its result read into rows, the sweep to saturation."""
import json
import math
import subprocess
from pathlib import Path

import pytest

from helpers import models
from helpers.measure import load_test, serving_bench

RESULT = {"completed": 8, "failed": 0, "request_throughput": 1.5, "output_throughput": 48.2, "request_goodput": 1.2,
          "median_ttft_ms": 210.4, "p99_ttft_ms": 900.2, "median_itl_ms": 95.31, "p99_itl_ms": 180.0,
          "p90_e2el_ms": 3100.4, "total_output_tokens": 256}


def _value(args, flag):
    return args[args.index(flag) + 1]


def test_the_tools_arguments_state_the_load_and_the_objectives():
    args = load_test.bench_args("http://127.0.0.1:8000", "m", "/tok", "/out", "r.json", concurrency=8,
                                rate=math.inf, prompts=16, input_len=128, output_len=32)
    assert _value(args, "--backend") == "openai-chat"
    assert _value(args, "--request-rate") == "inf" and _value(args, "--max-concurrency") == "8"
    assert "--ignore-eos" in args and _value(args, "--goodput") == "ttft:2000"
    open_loop = load_test.bench_args("u", "m", "t", "o", "r", concurrency=None, rate=0.5, prompts=8, input_len=8,
                                     output_len=8)
    assert _value(open_loop, "--request-rate") == "0.5" and "--max-concurrency" not in open_loop


def test_rows_and_the_sustainable_rate():
    assert load_test.row(RESULT, concurrency=4) == {
        "concurrency": 4, "req/s": 1.5, "output tok/s": 48.2, "goodput req/s": 1.2, "TTFT p50 ms": 210,
        "TTFT p99 ms": 900, "ITL p50 ms": 95.3, "ITL p99 ms": 180.0, "E2E p90 ms": 3100, "tokens out": 32.0, "failed": 0}
    failed = load_test.row({**RESULT, "failed": 2, "errors": ["", "HTTP 401", "HTTP 401"]}, concurrency=4)
    assert failed["failed"] == 2 and failed["errors"] == ["HTTP 401"]
    rows = [{"offered req/s": 1, "goodput req/s": 1.0}, {"offered req/s": 2, "goodput req/s": 1.7},
            {"offered req/s": 4, "goodput req/s": 2.0}]
    assert load_test.sustainable_rate(rows) == 2 and load_test.sustainable_rate(rows[2:]) == 0.0


def _bench_with_a_fake_tool(monkeypatch, served: dict):
    """A Bench whose tool answers each plan as bench_runs.py would, serving ``served[rate]`` requests/s."""
    bench = load_test.Bench.__new__(load_test.Bench)
    bench.runtime, bench.card, bench.tokenizer, bench.python, bench.runs = "local", models.get("phi4-nano"), "t", "py", 0
    plans = []

    def fake_tool(command, **kw):
        plan = json.loads(Path(command[-1]).read_text())
        plans.append({**plan, "api_key": kw["env"].get("OPENAI_API_KEY")})
        for argv in plan["runs"]:
            rate = float(_value(argv, "--request-rate"))
            result = {**RESULT, "request_throughput": served.get(rate, 1.0)}
            (Path(_value(argv, "--result-dir")) / _value(argv, "--result-filename")).write_text(json.dumps(result))
            if plan["saturated_below"] and result["request_throughput"] < plan["saturated_below"] * rate:
                break
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(load_test.subprocess, "run", fake_tool)
    return bench, plans


def test_the_rate_sweep_doubles_until_the_backend_falls_behind(monkeypatch):
    bench, plans = _bench_with_a_fake_tool(monkeypatch, {0.5: 0.5, 1.0: 0.85, 2.0: 1.4, 4.0: 1.4})
    rows = bench.rate_sweep("http://x", 0.5, 8, 8)
    assert [r["offered req/s"] for r in rows] == [0.5, 1.0, 2.0]  # 1.4 of 2.0 offered (< 80 %): saturated, stop
    assert len(plans) == 1  # one process of the tool for the whole sweep


def test_the_runner_stops_the_sweep_where_the_backend_falls_behind(monkeypatch, tmp_path):
    """bench_runs.py, vLLM's benchmark faked: it stops after the first rate served below the share asked."""
    import argparse
    import sys
    import types

    from helpers.measure import bench_runs

    offered, served = [], {0.5: 0.5, 1.0: 0.85, 2.0: 1.4, 4.0: 1.4}

    def bench_serve(args):
        offered.append(args.request_rate)
        return {"request_throughput": served[args.request_rate]}

    def add_cli_args(parser):
        parser.add_argument("--request-rate", type=float)

    modules = {"vllm": types.ModuleType("vllm"), "vllm.platforms": types.SimpleNamespace(
                   current_platform=types.SimpleNamespace(is_unspecified=lambda: False)),
               "vllm.benchmarks.serve": types.SimpleNamespace(add_cli_args=add_cli_args, main=bench_serve),
               "vllm.utils.argparse_utils": types.SimpleNamespace(FlexibleArgumentParser=argparse.ArgumentParser)}
    modules["vllm"].platforms = modules["vllm.platforms"]
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"runs": [["--request-rate", str(r)] for r in served], "saturated_below": 0.8}))
    bench_runs.main(str(plan))
    assert offered == [0.5, 1.0, 2.0]


def test_every_run_sends_prompts_no_earlier_run_sent(monkeypatch):
    """A server's prefix cache must not answer a later run's prompts from an earlier run's."""
    bench, plans = _bench_with_a_fake_tool(monkeypatch, {})
    bench.concurrency_sweep("http://x", (1, 2, 4), 8, 8)
    bench.concurrency_sweep("http://x", (1, 2), 8, 8)
    seeds = [_value(argv, "--seed") for plan in plans for argv in plan["runs"]]
    assert len(seeds) == 5 and len(set(seeds)) == 5


def test_a_server_that_asks_for_a_key_gets_it(monkeypatch):
    """Notebook 06's stack answers only with its API key: the tool sends OPENAI_API_KEY."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    bench, plans = _bench_with_a_fake_tool(monkeypatch, {})
    bench.concurrency_sweep("http://x", (1,), 8, 8, api_key="s3cret")
    bench.concurrency_sweep("http://x", (1,), 8, 8)
    assert [plan["api_key"] for plan in plans] == ["s3cret", None]


@pytest.mark.slow
def test_the_tool_measured_against_a_trivial_server():
    tool = load_test.Bench("local", models.get("phi4-nano"), progress=False)
    with serving_bench.trivial_server(tokens=16) as url:
        rows = tool.concurrency_sweep(url, (1, 2), input_len=16, output_len=16)
        rates = tool.rate_sweep(url, 4, input_len=16, output_len=16, prompts=8, steps=2)
    assert [r["concurrency"] for r in rows] == [1, 2] and all(r["failed"] == 0 and r["req/s"] > 0 for r in rows)
    assert [r["offered req/s"] for r in rates] in ([4], [4, 8]) and all(r["failed"] == 0 for r in rates)


@pytest.mark.slow
def test_the_tool_reads_events_split_anywhere():
    """An SSE event cut after ``data:`` is one event still (vLLM's client alone counted it failed)."""
    tool = load_test.Bench("local", models.get("phi4-nano"), progress=False)
    with serving_bench.trivial_server(tokens=8, split=True) as url:
        rows = tool.concurrency_sweep(url, (1,), input_len=16, output_len=8)
    assert rows[0]["failed"] == 0 and rows[0]["req/s"] > 0, rows


@pytest.mark.slow
def test_slm_lab_bench_measures_the_engines_two_builds_side_by_side(tmp_path, monkeypatch):
    from helpers.measure import side_by_side

    monkeypatch.setattr(side_by_side, "RUNS", tmp_path)
    side_by_side.main(["--model", "phi4-nano", "--repeat", "2", "--levels", "1,2",
                       "--backends", "onnx-engine", "onnx-engine genai-int4"])
    saved = json.loads((tmp_path / "side-by-side-phi4-nano.json").read_text())
    assert [row["backend"] for row in saved["medians"]] == ["onnx-engine", "onnx-engine genai-int4"]
    assert len(saved["rounds"]) == 2 and all(r["failed"] == 0 for bench in saved["rounds"] for sweeps in bench.values()
                                             for rows in sweeps.values() for r in rows)
