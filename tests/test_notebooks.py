"""Every notebook (and lab) executed with papermill, judged by the summary it writes."""
import json

import pytest

from helpers import workbook

NOTEBOOKS = workbook.discover(workbook.NOTEBOOKS)
LABS = workbook.discover(workbook.LABS)
# What each notebook must have verified, beyond finishing: summary check names.
REQUIRED_CHECKS = {
    "00_setup": ["architecture is Phi3ForCausalLM with GQA", "greedy decoding is deterministic",
                 "the seed's tool prompt yields calculate_circle_area(radius=5)"],
    "01_vllm": ["server lists the served model", "tool call calculate_circle_area(radius=5)",
                "final answer uses the tool's result", "bad requests are 4xx, not 5xx"],
    "02_ollama": ["phi4-mini pulled", "tool call calculate_circle_area(radius=5)", "both variants created",
                  "each variant runs with its stored SYSTEM and PARAMETERs", "OpenAI endpoint returns the tool call"],
    "03_onnx_conversion": ["optimum-fp32 matches PyTorch within the original context", "genai-fp32 greedy answers equal PyTorch's",
                           "the optimum export diverges past the longrope switch point", "the genai build follows PyTorch past it"],
    "05_comparison": ["no backend scores lower than transformers", "every benchmark request succeeded", "report exported",
                      "the dashboard's comparison reaches every backend"],
    "06_production": ["every compose file is valid and lint-clean", "scaling out raises peak throughput",
                      "every replica served requests", "vLLM's /metrics counts the generated tokens",
                      "nothing of the stack is left", "the Kubernetes manifests pass their checks"],
    "04_onnx_engine": ["tool call calculate_circle_area(radius=5)", "a streamed tool request returns tool_calls deltas",
                       "/reasoning (math) answers 2.4", "bad requests are 4xx, not 5xx"],
}


def test_workbook_has_notebooks_in_order():
    names = [p.name for p in NOTEBOOKS]
    assert names and names[0] == "00_setup.ipynb" and names == sorted(names)


@pytest.mark.parametrize("path", NOTEBOOKS + LABS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS + LABS, ids=lambda p: p.name)
def test_has_a_parameters_cell(path):
    cells = json.loads(path.read_text())["cells"]
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells)


NEEDS_DOCKER = {"06_production"}  # runs a compose stack on the local Docker engine


@pytest.mark.slow
@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.docker) if p.stem in NEEDS_DOCKER else p
                                  for p in NOTEBOOKS], ids=lambda p: p.name)
def test_notebook_executes(path, tmp_path, nano):
    summary = workbook.run_notebook(path, tmp_path, {"runtime": "local"}, timeout=1200)
    assert summary["complete"], "the notebook stopped before its last cell"
    failed = {name: c["detail"] for name, c in summary["checks"].items() if not c["ok"]}
    assert not failed
    missing = set(REQUIRED_CHECKS.get(path.stem, [])) - set(summary["checks"])
    assert not missing, f"checks not run: {missing}"


def test_there_are_four_labs_each_with_a_solution():
    assert len(LABS) >= 4
    for lab in LABS:
        assert (lab.parent / "solutions" / f"{lab.stem}.py").exists(), f"{lab.name} has no solution"


@pytest.mark.slow
@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_lab_passes_with_its_solution(path, tmp_path, nano):
    summary = workbook.run_notebook(path, tmp_path, {"runtime": "local", "use_solution": True}, timeout=1200)
    failed = {name: c["detail"] for name, c in summary["checks"].items() if not c["ok"]}
    assert summary["complete"] and summary["checks"] and not failed


@pytest.mark.slow
@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_lab_without_solution_fails_its_checks_helpfully(path, tmp_path, nano):
    summary = workbook.run_notebook(path, tmp_path, {"runtime": "local", "use_solution": False}, timeout=1200)
    assert summary["complete"], "an unfinished lab must run to its checklist, not crash"
    open_goals = [c for c in summary["checks"].values() if not c["ok"]]
    assert open_goals, "without the solution some goals must be open"
    assert all(c["hint"] for c in open_goals), "every open goal says what to do"
    assert any("not done yet" in c["detail"] for c in open_goals), "the TODOs are named as such"
