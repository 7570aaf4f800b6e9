"""Every notebook (and lab) executed with papermill, judged by the summary it writes.

Runs: every notebook on phi4-nano (exact answers, hard checks); notebooks 00-05 and the labs on the real model
(Qwen2.5-Coder-0.5B: invariants hard, answers scored); notebooks 01, 02 and 04 on the docker runtime (local
stand-in images where no registry answers); notebook 06 with no Docker daemon reachable.
"""
import json

import pytest

from helpers import workbook
from helpers.summary import hard_failures

NOTEBOOKS = workbook.discover(workbook.NOTEBOOKS)
LABS = workbook.discover(workbook.LABS)
BY_STEM = {p.stem: p for p in NOTEBOOKS + LABS}
NANO, QWEN = "phi4-nano", "qwen2.5-coder-0.5b"
# What each notebook must have verified, beyond finishing: summary check names (any model).
REQUIRED_CHECKS = {
    "00_setup": ["greedy decoding is deterministic", "the seed's tool prompt yields calculate_circle_area(radius=5)"],
    "01_vllm": ["server lists the served model", "the server parsed what the model wrote",
                "tool calls are valid against their schema", "final answer uses the tool's result",
                "streamed text equals the non-streamed answer", "bad requests are 4xx, not 5xx"],
    "02_ollama": ["model pulled", "the server parsed what the model wrote", "both variants created",
                  "streamed text equals the non-streamed answer",
                  "each variant runs with its stored SYSTEM and PARAMETERs",
                  "each variant's SYSTEM reaches the model: its prompt is the by-hand one, and the two prompts differ",
                  "OpenAI endpoint returns the same tool calls",
                  "errors are Ollama's: 404 for an unknown model, 500 for a bad option type"],
    "03_onnx_conversion": ["every variant folder carries its tokenizer and chat template",
                           "genai-fp32 gives PyTorch's greedy tokens"],
    "04_onnx_engine": ["engine is ready and serves the card's variant", "the server parsed what the model wrote",
                       "a streamed tool request returns the same tool calls", "/reasoning answers every example with usage",
                       "bad requests are 4xx, not 5xx"],
    "05_comparison": ["every benchmark request succeeded", "report exported", "the dashboard's race reaches every backend",
                      "onnx-engine gives transformers' greedy answers on at least 95 % of the suite",
                      "vllm gives transformers' greedy answers on at least 95 % of the suite"],
    "06_production": ["every compose file passes the security lint", "the lint catches the seed's flaws",
                      "the Kubernetes manifests pass their checks"],
}
MODEL_CHECKS = {
    (NANO, "03_onnx_conversion"): ["the optimum export diverges past the longrope switch point",
                                   "the genai build follows PyTorch past it"],
    (NANO, "05_comparison"): ["no backend scores lower than transformers",
                              "ollama gives transformers' greedy answers on at least 95 % of the suite"],
    (NANO, "06_production"): ["the engine runs read-only, non-root, with the card's limits", "no request failed",
                              "HAProxy sent requests to every replica", "every replica served requests",
                              "vLLM's /metrics counts the generated tokens", "nothing of the stack is left"],
}


def _case(stem, model, runtime="local", marks=(), **extra):
    return pytest.param(BY_STEM[stem], {"runtime": runtime, "model": model, **extra}, marks=[pytest.mark.slow, *marks],
                        id=f"{stem}-{model}-{runtime}" + "".join(f"-{k}={v}" for k, v in extra.items()))


NOTEBOOK_RUNS = (
    [_case(p.stem, NANO, marks=[pytest.mark.docker] if p.stem == "06_production" else []) for p in NOTEBOOKS]
    + [_case(p.stem, QWEN) for p in NOTEBOOKS if p.stem != "06_production"]
    + [_case(stem, NANO, "docker", [pytest.mark.docker]) for stem in ("01_vllm", "02_ollama", "04_onnx_engine")])
LAB_RUNS = ([_case(p.stem, NANO, use_solution=True) for p in LABS] + [_case(p.stem, QWEN, use_solution=True) for p in LABS])


def test_workbook_has_notebooks_in_order():
    names = [p.name for p in NOTEBOOKS]
    assert names and names[0] == "00_setup.ipynb" and names == sorted(names)


@pytest.mark.parametrize("path", NOTEBOOKS + LABS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS + LABS, ids=lambda p: p.name)
def test_takes_runtime_and_model_as_parameters(path):
    cells = json.loads(path.read_text())["cells"]
    source = "".join(next(c["source"] for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])))
    assert "runtime = " in source and "model = None" in source


def _executed(path, params, tmp_path):
    summary = workbook.run_notebook(path, tmp_path, params, timeout=1800)
    assert summary["complete"], "the notebook stopped before its last cell"
    assert not hard_failures(summary)
    assert summary["parameters"]["model"] == params["model"] and summary["parameters"]["runtime"] == params["runtime"]
    return summary


@pytest.mark.parametrize("path, params", NOTEBOOK_RUNS)
def test_notebook_executes(path, params, tmp_path, nano):
    summary = _executed(path, params, tmp_path)
    required = REQUIRED_CHECKS.get(path.stem, []) + MODEL_CHECKS.get((params["model"], path.stem), [])
    if params["model"] != NANO and path.stem == "05_comparison":  # llama.cpp runs the 4-bit GGUF: measured, not asserted
        required = [c for c in required if not c.startswith("ollama gives")]
    missing = set(required) - set(summary["checks"])
    assert not missing, f"checks not run: {missing}"
    values = summary["values"]
    if path.stem in ("01_vllm", "02_ollama", "04_onnx_engine"):  # raw text beside the parsed calls
        assert {"raw", "parsed", "format_written"} <= set(values["tool_call"])
    if path.stem == "05_comparison":  # every backend's answers, scores, tool calls and speed
        assert set(values["answers"]) == {"transformers", "vllm", "ollama", "onnx-engine"}
        assert all({"answer", "ok", "tool_calls"} <= set(row) for rows in values["answers"].values() for row in rows)
        assert set(values["benchmark"]) == {"vllm", "ollama", "onnx-engine"}


@pytest.mark.slow
def test_production_notebook_runs_without_a_docker_daemon(tmp_path, nano, monkeypatch):
    """Validation, the lint and the k8s render run; the stack's cells say that they were skipped."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    summary = _executed(BY_STEM["06_production"], {"runtime": "local", "model": NANO}, tmp_path)
    assert set(REQUIRED_CHECKS["06_production"]) <= set(summary["checks"])
    assert summary["values"]["skipped"] == {"convert job and engine stack": "no Docker daemon"}


def test_there_are_four_labs_each_with_a_solution():
    assert len(LABS) >= 4
    for lab in LABS:
        assert (lab.parent / "solutions" / f"{lab.stem}.py").exists(), f"{lab.name} has no solution"


@pytest.mark.parametrize("path, params", LAB_RUNS)
def test_lab_passes_with_its_solution(path, params, tmp_path, nano):
    summary = _executed(path, params, tmp_path)
    assert summary["checks"] and summary["values"]["goals_reached"][1] == len(summary["checks"])


@pytest.mark.slow
@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_lab_without_solution_fails_its_checks_helpfully(path, tmp_path, nano):
    summary = workbook.run_notebook(path, tmp_path, {"runtime": "local", "model": NANO, "use_solution": False},
                                    timeout=1200)
    assert summary["complete"], "an unfinished lab must run to its checklist, not crash"
    open_goals = [c for c in summary["checks"].values() if not c["ok"]]
    assert open_goals, "without the solution some goals must be open"
    assert all(c["hint"] for c in open_goals), "every open goal says what to do"
    assert any("not done yet" in c["detail"] for c in open_goals), "the TODOs are named as such"
