"""Every notebook (and lab) executed with papermill, judged by the summary it writes.

Runs: every notebook on phi4-nano (exact answers, hard checks; notebook 05 on the docker runtime); notebooks 00-05
and the labs on the real model (Qwen2.5-Coder-0.5B: invariants hard, answers scored), notebooks 00-05 again on the
docker runtime (local stand-in images where no registry answers); notebook 06 with no Docker daemon reachable.
"""
import json
import shutil

import pytest

from helpers import backends
from helpers.system import machine
from helpers.workbook import runner
from helpers.workbook.summary import hard_failures

NOTEBOOKS = runner.discover(runner.NOTEBOOKS)
LABS = runner.discover(runner.LABS)
BY_STEM = {p.stem: p for p in NOTEBOOKS + LABS}
NANO, QWEN = "phi4-nano", "qwen2.5-coder-0.5b"
# What each notebook must have verified, beyond finishing: the ids of its summary's checks (any model).
REQUIRED_CHECKS = {
    "00_setup": ["greedy-deterministic", "seed-tool-call"],
    "01_vllm": ["served-model", "tool-call-parsed", "tool-call-schema", "tool-result-answer", "streamed-equals",
                "bad-requests-4xx"],
    "02_ollama": ["model-pulled", "tool-call-parsed", "variants-created", "streamed-equals", "variants-stored",
                  "variants-system", "openai-endpoint-tool-calls", "ollama-errors"],
    "03_onnx_conversion": ["variant-folders", "genai-fp32-parity"],
    "04_onnx_engine": ["engine-ready", "tool-call-parsed", "streamed-tool-calls", "reasoning-usage", "bad-requests-4xx"],
    "05_comparison": ["benchmark-ok", "engine-int4", "report-exported", "dashboard-race",
                      "suite-agreement:onnx-engine", "suite-agreement:vllm"],
    "06_production": ["compose-lint", "lint-catches-seed", "k8s-manifests"],
}
MODEL_CHECKS = {
    (NANO, "03_onnx_conversion"): ["longrope-optimum-diverges", "longrope-genai-follows"],
    (NANO, "05_comparison"): ["no-lower-score", "suite-agreement:ollama"],
    (NANO, "06_production"): ["engine-hardened", "api-key", "no-request-failed", "lb-every-replica", "replicas-served", "vllm-metrics",
                              "stack-removed"],
}

def _case(stem, model, runtime="local", marks=(), **extra):
    return pytest.param(BY_STEM[stem], {"runtime": runtime, "model": model, **extra}, marks=[pytest.mark.slow, *marks],
                        id=f"{stem}-{model}-{runtime}" + "".join(f"-{k}={v}" for k, v in extra.items()))


# Notebook 05 on Qwen with local processes runs inside an 8 GB memory cgroup (tests/test_memory_limit.py); on phi4-nano
# it runs on the docker runtime only (the local runtime's notebook 05 is the cgroup run's). Notebook 06 builds and runs
# its stack with Docker on either runtime: it runs once, on phi4-nano (`make lab` runs it on Qwen).
NOTEBOOK_RUNS = (
    [_case(p.stem, NANO, marks=[pytest.mark.docker] if p.stem == "06_production" else []) for p in NOTEBOOKS
     if p.stem != "05_comparison"]
    + [_case("05_comparison", NANO, "docker", [pytest.mark.docker])]
    + [_case(p.stem, QWEN) for p in NOTEBOOKS if p.stem not in ("05_comparison", "06_production")]
    + [_case(p.stem, QWEN, "docker", [pytest.mark.docker]) for p in NOTEBOOKS if p.stem != "06_production"])
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
    summary = runner.run_notebook(path, tmp_path, params, timeout=1800)
    assert summary["complete"], "the notebook stopped before its last cell"
    assert not hard_failures(summary)
    assert summary["parameters"]["model"] == params["model"] and summary["parameters"]["runtime"] == params["runtime"]
    return summary


def _keep_for_the_book(book_run, path, params, tmp_path, folder=""):
    """The real model's local run is the one the book shows (test_the_book_renders_every_chapter)."""
    if params["model"] == QWEN and params["runtime"] == "local":
        (book_run / folder).mkdir(parents=True, exist_ok=True)
        for name in (path.name, f"{path.stem}.summary.json"):
            shutil.copy(tmp_path / name, book_run / folder / name)
        if (tmp_path / "report").exists():
            shutil.copytree(tmp_path / "report", book_run / "report", dirs_exist_ok=True)


@pytest.mark.parametrize("path, params", NOTEBOOK_RUNS)
def test_notebook_executes(path, params, tmp_path, nano, request, book_run):
    docker = params["runtime"] == "docker" or path.stem == "06_production"
    learners_own = request.getfixturevalue("learners_own") if docker else None
    summary = _executed(path, params, tmp_path)
    _keep_for_the_book(book_run, path, params, tmp_path)
    if learners_own:  # the lab's docker work, and its cleanup, left the learner's own stack, container and volume
        from helpers.deploy import runtimes
        runtimes.DockerRuntime().cleanup()
        assert not learners_own(), f"touched: {learners_own()}"
    judge(path, params, summary)
    read_as_a_learner(path, params, tmp_path / path.name)


MAX_OUTPUT_LINES = 30
SHOWS_THE_WIRE = {"01_vllm": "chat.completions.create(", "02_ollama": "client.chat(", "04_onnx_engine": "chat.completions.create("}


def _output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append("".join(out["text"]))
        elif out["output_type"] in ("execute_result", "display_data"):
            data = out["data"]
            parts.append("".join(data.get("text/markdown") or data.get("text/plain") or ""))
    return "".join(parts)


def read_as_a_learner(path, params, executed):
    """The executed notebook as a learner reads it: no cell prints more than ~30 lines, none ends in a bare
    True/False, the API notebooks show a request as curl and the official client's call, and notebook 03 names
    no ONNX variant the model's card does not build."""
    from helpers import models
    from helpers.models import onnx_convert

    cells = json.loads(executed.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    for cell in code:
        text = _output_text(cell)
        assert text.count("\n") <= MAX_OUTPUT_LINES, f"{path.name}: a cell prints {text.count(chr(10))} lines:\n{text[:600]}"
        bare = [o for o in cell.get("outputs", []) if o["output_type"] == "execute_result"
                and "".join(o["data"].get("text/plain", "")).strip() in ("True", "False")]
        assert not bare, f"{path.name}: a cell ends in a bare True/False: {''.join(cell['source'])[-200:]}"
    if path.stem in SHOWS_THE_WIRE:
        outputs = "".join(_output_text(c) for c in code)
        sources = "".join("".join(c["source"]) for c in code)
        assert "curl -s http" in outputs and "HTTP 200" in outputs and SHOWS_THE_WIRE[path.stem] in sources, path.name
    if path.stem == "03_onnx_conversion":
        built = set(models.get(params["model"]).onnx_variants)
        text = "".join(_output_text(c) if c["cell_type"] == "code" else "".join(c["source"]) for c in cells)
        named = {v.name for v in onnx_convert.VARIANTS if v.name in text}
        assert named <= built, f"notebook 03 names variants its card does not build: {named - built}"


def judge(path, params, summary):
    """What a notebook's summary must show beyond finishing: its checks ran, and its records have their shape."""
    required = REQUIRED_CHECKS.get(path.stem, []) + MODEL_CHECKS.get((params["model"], path.stem), [])
    if params["model"] != NANO and path.stem == "05_comparison":  # llama.cpp runs the 4-bit GGUF: measured, not asserted
        required = [c for c in required if c != "suite-agreement:ollama"]
    missing = set(required) - set(summary["checks"])
    assert not missing, f"checks not run: {missing}"
    values = summary["values"]
    if path.stem in ("01_vllm", "02_ollama", "04_onnx_engine"):  # raw text beside the parsed calls
        assert {"raw", "parsed", "format_written"} <= set(values["tool_call"])
    if path.stem == "05_comparison":  # every backend's answers, scores, tool calls and speed
        assert set(values["answers"]) == {"transformers", *backends.BACKENDS}
        assert all({"answer", "ok", "tool_calls"} <= set(row) for rows in values["answers"].values() for row in rows)
        assert set(values["benchmark"]) == set(backends.BACKENDS)
        if not machine.nvidia_gpus():  # what each backend reported it ran on
            assert values["devices"] == dict.fromkeys(backends.BACKENDS, "cpu")


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.gpu
@pytest.mark.parametrize("stem", ["01_vllm", "02_ollama", "04_onnx_engine"])
def test_the_docker_runtime_serves_on_the_gpu(stem, tmp_path, request):
    """Where an NVIDIA GPU and Docker's NVIDIA runtime exist, the containers get --gpus and compute on it, as each
    reports (vLLM's log, Ollama's /api/ps, the engine's /health: its CUDA image's provider)."""
    params = {"runtime": "docker", "model": QWEN}
    summary = _executed(BY_STEM[stem], params, tmp_path)
    judge(BY_STEM[stem], params, summary)
    read_as_a_learner(BY_STEM[stem], params, tmp_path / f"{stem}.ipynb")
    device = summary["values"]["device"]
    assert "gpu" in device, device


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
def test_lab_passes_with_its_solution(path, params, tmp_path, nano, book_run):
    summary = _executed(path, params, tmp_path)
    read_as_a_learner(path, params, tmp_path / path.name)
    _keep_for_the_book(book_run, path, params, tmp_path, "labs")
    assert summary["checks"] and summary["values"]["goals_reached"][1] == len(summary["checks"])


@pytest.mark.slow
@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_lab_without_solution_fails_its_checks_helpfully(path, tmp_path, nano):
    summary = runner.run_notebook(path, tmp_path, {"runtime": "local", "model": NANO, "use_solution": False},
                                    timeout=1200)
    assert summary["complete"], "an unfinished lab must run to its checklist, not crash"
    open_goals = [c for c in summary["checks"].values() if not c["ok"]]
    assert open_goals, "without the solution some goals must be open"
    assert all(c["hint"] for c in open_goals), "every open goal says what to do"
    assert any("not done yet" in c["detail"] for c in open_goals), "the TODOs are named as such"


@pytest.mark.slow
@pytest.mark.browser
def test_the_book_renders_every_chapter_of_this_run(book_run, browser):
    """make book on the run above (the real model, local processes): every chapter opens, its plots render."""
    from helpers.workbook import book

    executed = runner.discover(book_run)
    if len(executed) < len([p for p in NOTEBOOKS if p.stem != "06_production"]) - 1:
        pytest.skip("the notebook runs of the real model did not all run in this session")
    index = book.build(book_run)
    browser.get(index.as_uri())
    links = [a.get_attribute("href") for a in browser.find_elements("css selector", "table a")]
    assert len(links) == len(executed) + len(runner.discover(book_run / "labs"))
    for link in links:
        browser.get(link)
        images = browser.find_elements("css selector", ".jp-OutputArea img")
        broken = [i.get_attribute("alt") or "plot" for i in images
                  if not browser.execute_script("return arguments[0].naturalWidth > 0", i)]
        assert not broken, f"{link}: plots that do not render: {broken}"
        if "05_comparison" in link:
            assert images, "notebook 05's plots are missing"
