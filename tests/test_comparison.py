"""The comparison toolkit: task-suite plumbing, benchmark statistics and harness, table, report, dashboard."""

import pytest

from helpers import backends, clients, models
from helpers.clients import ollama_api, openai_api
from helpers.measure import comparison, report, serving_bench, task_suite
from helpers.tasks import curriculum
from helpers.workbook import dashboard


def test_messages_convert_for_each_api():
    task = next(t for t in curriculum.heldout_set(3) if t.family == "tool_result")
    openai = openai_api.messages(task.messages)
    call = next(m for m in openai if m.get("tool_calls"))["tool_calls"][0]
    assert isinstance(call["function"]["arguments"], str) and call["id"]
    assert openai[-1]["role"] == "tool" and openai[-1]["tool_call_id"] == call["id"]
    ollama = ollama_api.messages(openai)
    assert isinstance(next(m for m in ollama if m.get("tool_calls"))["tool_calls"][0]["function"]["arguments"], dict)


def test_suite_grades_answers_in_native_form():
    class Echo:  # answers every task with its trained answer
        def __init__(self, tasks):
            self.answers = {t.key: t.answer for t in tasks}

        def complete(self, task):
            return self.answers[task.key], []

    tasks = task_suite.suite(models.get("phi4-nano"))
    assert len(tasks) == 6 * 10 + 11
    results = task_suite.run(Echo(tasks), tasks, progress=False)
    assert task_suite.accuracy(results)["all"] == 1.0
    worse = [task_suite.Result(r.family, r.key, False, "x", "", 0) for r in results]
    verdict = task_suite.against_reference({"transformers": results, "broken": worse, "same": results})
    assert verdict["broken"]["lower_than_reference"] and verdict["broken"]["agreement"] == 0.0
    assert verdict["same"] == {"lower_than_reference": {}, "answers_differing": 0, "differing": [], "agreement": 1.0}
    assert "transformers" not in verdict


def test_a_real_models_suite_is_the_cards_share():
    tasks = task_suite.suite(models.get("qwen2.5-coder-0.5b"))
    assert len(tasks) == 6 + 2 and {t.key for t in tasks if t.family == "seed"} == {"seed|tool", "seed|tool-result"}
    nano = models.get("phi4-nano")
    assert task_suite.Served(backends.get("ollama").client("http://x", nano), nano).client.__class__ is ollama_api.Client
    assert task_suite.Served(backends.get("vllm").client("http://x", nano), nano).client.__class__ is openai_api.Client


def test_percentiles_and_summary():
    stats = serving_bench.percentiles([i / 1000 for i in range(1, 101)])
    assert stats["p50"] == pytest.approx(51, abs=1) and stats["p99"] == pytest.approx(99, abs=1)
    samples = [serving_bench.Sample(0.01, 0.1, 10, [0.01] * 9), serving_bench.Sample(0, 0, 0, ok=False, error="boom")]
    row = serving_bench.summarize(samples, 1.0, 2)
    assert row["failed"] == 1 and row["output_tok_s"] == 10 and row["errors"] == ["boom"]


def _against_a_trivial_server(levels, requests_per_level, tokens):
    """The lab's own load generator (the dashboard's benchmark button) against a server with no model."""
    with serving_bench.trivial_server(tokens) as url:
        return serving_bench.sweep(url, "trivial", [[{"role": "user", "content": "x"}]], lambda text: len(text.split()),
                                   levels, requests_per_level, warmup=2, max_tokens=tokens, progress=False)


def test_the_dashboards_load_generator_against_a_trivial_server():
    rows = _against_a_trivial_server((1, 4), 8, 32)
    assert [r["failed"] for r in rows] == [0, 0]
    assert all(r["output_tokens"] == 32 * r["requests"] for r in rows)  # counted by the counter, not by chunks


def test_the_concurrency_plot_draws_every_backend_against_concurrency():
    import matplotlib
    matplotlib.use("Agg")
    rows = _against_a_trivial_server((1, 2, 4), 4, 8)
    fig = comparison.plot_concurrency({"a": rows, "b": rows})
    throughput, ttft, itl = fig.axes
    assert [len(line.get_xdata()) for line in throughput.lines] == [3, 3]
    assert len(ttft.lines) == len(itl.lines) == 4  # p50 and p99 per backend


def test_framework_table_keeps_the_seed_guess_beside_each_measurement():
    measured = {"vllm": {"ready_s": 30.0, "install": "venv", "memory_mb": 2900.0, "tok_s": 400.0, "tool_accuracy": 0.5,
                         "tool_streaming": False, "device": "cpu"},
                "ollama": {"ready_s": 1.0, "install": "image", "memory_mb": 900.0, "tok_s": 90.0, "tool_accuracy": 0.5,
                           "device": "60% gpu"}}
    rows = comparison.framework_table(measured)
    table = {row["feature"]: row["vllm"] for row in rows}
    assert table["CPU tok/s (1 stream)"] == "400 (seed: ~8)"
    assert table["GPU tok/s (1 stream)"].startswith("not measured (ran on the cpu)")
    partly = {row["feature"]: row["ollama"] for row in rows}  # what the backend reported, whatever the machine has
    assert partly["GPU tok/s (1 stream)"].startswith("90 (60% gpu)")
    assert partly["CPU tok/s (1 stream)"].startswith("not measured (ran on the 60% gpu)")
    assert "not streamed" in table["function calling"] and "2,900 MB" in table["memory"]


def test_report_writes_markdown_and_html_with_figures(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    fig = comparison.plot_memory({"a": 10.0, "b": 20.0})
    md, html = report.write(tmp_path, "T", [("Table", "| a | b |\n|---|---|\n| 1 | 2 |")], {"memory": fig})
    assert "| 1 | 2 |" in md.read_text() and "<td>1</td>" in html.read_text()
    assert "data:image/png;base64," in html.read_text() and (tmp_path / "memory.png").exists()


def test_dashboard_races_every_backend_concurrently_and_builds_its_widget():
    with serving_bench.trivial_server(tokens=8) as url:
        columns = {"a": clients.connect("openai", url, "m"), "b": clients.connect("openai", url, "m")}
        dash = dashboard.Dashboard(columns, models.get("phi4-nano"), count_tokens=lambda text: len(text.split()))
        updates = []
        rows = dash.race("hi", concurrency=3, on_update=lambda name, row: updates.append((name, row["tokens"])))
        assert [(r["backend"], r["tokens"], r["error"]) for r in rows] == [("a", 24, ""), ("b", 24, "")]
        assert all(r["ttft_s"] is not None and r["tok_s"] > 0 for r in rows)
        assert {("a", 24), ("b", 24)} <= set(updates)  # the final update of each column
        assert len(dash.widget("hi").children) == 8


def test_backends_that_run_in_turn_race_one_column_after_another():
    with serving_bench.trivial_server(tokens=8) as url:
        running, switched = [], []

        def switch(name):  # as Chapter.switch_to: the one before stops, this one starts
            running[:] = [name]
            switched.append(name)
            return clients.connect("openai", url, "m")

        dash = dashboard.Dashboard(dict.fromkeys(["a", "b"]), models.get("phi4-nano"),
                                   count_tokens=lambda text: len(text.split()), switch=switch)
        rows = dash.race("hi", concurrency=2)
        assert [(r["backend"], r["tokens"], r["error"]) for r in rows] == [("a", 16, ""), ("b", 16, "")]
        assert switched == ["a", "b"] and running == ["b"]
        buttons = dash.widget("hi").children[4]
        assert "one backend at a time" in buttons.children[-1].value  # the status line says so


def test_the_dashboards_benchmark_button_sweeps_the_chosen_backends():
    with serving_bench.trivial_server(tokens=8) as url:
        dash = dashboard.Dashboard({"a": clients.connect("openai", url, "m")}, models.get("phi4-nano"),
                                   count_tokens=lambda text: len(text.split()))
        result = dash.benchmark(["a"], concurrency=2, max_tokens=8)
        assert [r["concurrency"] for r in result["a"]] == [1, 2] and all(r["failed"] == 0 for r in result["a"])


def test_a_failing_backend_shows_its_error_in_its_own_column():
    with serving_bench.trivial_server(tokens=8) as url:
        columns = {"up": clients.connect("openai", url, "m"), "down": clients.connect("openai", "http://127.0.0.1:9", "m")}
        dash = dashboard.Dashboard(columns, models.get("phi4-nano"), count_tokens=lambda text: len(text.split()))
        up, down = dash.race("hi")
        assert up["tokens"] == 8 and not up["error"]
        assert down["tokens"] == 0 and "Connection" in down["error"]


def test_measurements_feed_the_table():
    bench = {"vllm": {"concurrency": [{"concurrency": 1, "output tok/s": 400.0}, {"concurrency": 2, "output tok/s": 500.0}],
                      "rate": []}}
    accuracy = {"vllm": {"tool_call": 0.2, "no_tool": 0.1, "tool_result": 0.3}}
    m = comparison.measurements("local", {"vllm": 20.0}, {"vllm": 2900.0}, bench, accuracy, {"vllm": "cpu"})["vllm"]
    assert m["tok_s"] == 400.0 and m["tool_accuracy"] == pytest.approx(0.2) and not m["tool_streaming"]
    assert m["install"].startswith("own virtualenv")


def test_an_answer_that_makes_no_progress_says_so():
    import io
    import time

    from helpers.clients.reply import NoProgressWatch

    out = io.StringIO()
    with NoProgressWatch("m at http://x", patience=0.5, out=out) as watch:
        time.sleep(0.8)
        watch.progress()
        said = out.getvalue()
        for _ in range(10):  # tokens keep coming: nothing more is said
            watch.progress()
            time.sleep(0.02)
    assert said.count("no new token") >= 1 and "docs/memory.md" in said
    assert out.getvalue() == said


def test_the_figures_table_sets_each_backend_beside_its_bandwidth_bound():
    row = {"output tok/s": 10.0, "ITL p99 ms": 120.0}
    bench = {"vllm": {"concurrency": [{"concurrency": 1, **row}, {"concurrency": 8, **row, "output tok/s": 40.0}],
                      "rate": [{"offered req/s": 0.5, "goodput req/s": 0.5}]}}
    bench["onnx-engine genai-int4"] = {"concurrency": [{"concurrency": 1, **row}]}  # one stream only
    fig, int4 = comparison.figures(bench, {"vllm": 2_000_000_000, "onnx-engine genai-int4": 500_000_000}, 25e9)
    assert fig["bound tok/s"] == 12.5 and fig["1 stream / bound"] == "80%" and fig["tok/s at 8"] == 40.0
    assert fig["req/s within objectives"] == 0.5 and fig["GB read per token"] == 2.0
    assert int4["tok/s at 8"] == int4["req/s within objectives"] == "–" and int4["bound tok/s"] == 50.0


def test_weights_read_per_token_count_a_tied_embedding_once_and_whole():
    from helpers.measure import memory_bound

    nano = models.get("phi4-nano")  # tied: the LM head reads the whole embedding table
    assert memory_bound.hf_bytes_per_token(nano.hf_folder(progress=False), "float32") == nano.parameters * 4
    assert memory_bound.hf_bytes_per_token(nano.hf_folder(progress=False), "bfloat16") == nano.parameters * 2


def test_side_by_side_takes_medians_of_its_rounds_and_the_engines_int4_build():
    from helpers.measure import side_by_side

    assert side_by_side.entries(models.get("qwen2.5-coder-0.5b"))["onnx-engine genai-int4"] == (
        "onnx-engine", {"variant": "genai-int4"})
    assert "onnx-engine genai-int4" not in side_by_side.entries(models.get("phi-4-mini"))  # it serves int4 already
    assert backends.get("onnx-engine").int4_beside(models.get("phi-4-mini")) is None
    rounds = [[{"backend": "vllm", "1 stream tok/s": tok_s, "bound tok/s": 20.0, "1 stream / bound": "?",
                "req/s within objectives": 0.5}] for tok_s in (9.0, 12.0, 10.0)]
    (row,) = side_by_side.medians(rounds)
    assert row["1 stream tok/s"] == 10.0 and row["1 stream tok/s (range)"] == "9-12"
    assert row["1 stream / bound"] == "50%" and "req/s within objectives (range)" not in row
