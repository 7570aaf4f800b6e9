"""The docker-run arguments built for the official vLLM images, checked without Docker or a GPU."""
from helpers import backends, deploy


def _kwargs(gpu_spec: bool, gpu_available: bool):
    spec = backends.vllm_docker(gpu=gpu_spec, hf_cache="/hf")
    return spec, deploy.docker_run_kwargs(spec, spec.image, 18000, gpu_available)


def test_gpu_vllm_uses_cuda_image_tool_parser_and_all_gpus():
    spec, kw = _kwargs(gpu_spec=True, gpu_available=True)
    assert kw["image"] == f"vllm/vllm-openai:v{backends.venvs.VLLM_VERSION}" and ":latest" not in kw["image"]
    cmd = kw["command"]
    assert cmd[cmd.index("--tool-call-parser") + 1] == "phi4_mini_json" and "--enable-auto-tool-choice" in cmd
    assert cmd[cmd.index("--chat-template") + 1].endswith("tool_chat_template_phi4_mini.jinja")
    assert "--gpu-memory-utilization" in cmd and "--quantization" not in cmd
    (request,) = kw["device_requests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert kw["ports"] == {"8000/tcp": ("127.0.0.1", 18000)}
    assert kw["volumes"] == {"/hf": {"bind": "/root/.cache/huggingface", "mode": "rw"}}
    assert kw["labels"][deploy.LABEL] == "1" and kw["shm_size"] == "2g"


def test_no_device_request_without_nvidia_runtime():
    _, kw = _kwargs(gpu_spec=True, gpu_available=False)
    assert "device_requests" not in kw


def test_cpu_vllm_uses_the_cpu_image_eager_and_limits():
    spec, kw = _kwargs(gpu_spec=False, gpu_available=True)
    assert "vllm-cpu-release-repo" in kw["image"] and "device_requests" not in kw
    assert "--enforce-eager" in kw["command"] and "--gpu-memory-utilization" not in kw["command"]
    assert kw["environment"]["VLLM_CPU_KVCACHE_SPACE"] == "4" and kw["mem_limit"] == "12g"


def test_seed_flaws_are_explained():
    assert any("tool-call-parser" in flaw for flaw in backends.SEED_VLLM_FLAWS)
    assert any("awq" in flaw for flaw in backends.SEED_VLLM_FLAWS)


def test_local_vllm_matches_transformers_numerics_and_reads_native_tool_calls(tmp_path):
    spec = backends.vllm_local(tmp_path / "phi4-nano", vllm_bin=tmp_path / "vllm")
    cmd = spec.local_command
    assert cmd[:2] == [str(tmp_path / "vllm"), "serve"] and "{port}" in cmd
    assert cmd[cmd.index("--max-model-len") + 1] == "1024", "above the longrope switch vLLM uses long factors"
    assert cmd[cmd.index("--dtype") + 1] == "float32"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1", "a local backend listens on loopback only"
    assert cmd[cmd.index("--tool-call-parser") + 1] == "phi4_mini_native"
    assert cmd[cmd.index("--tool-parser-plugin") + 1] == str(backends.NATIVE_TOOL_PARSER)
    assert backends.NATIVE_TOOL_PARSER.exists()
    assert spec.env["VLLM_TARGET_DEVICE"] == "cpu" and spec.env["HF_HUB_OFFLINE"] == "1"


def test_docker_runtime_serves_phi4_mini_from_the_hub():
    spec, model = backends.vllm_for("docker", gpu=False)
    assert model == backends.PHI4_MINI and spec.image == backends.VLLM_CPU_IMAGE
    assert spec.command[spec.command.index("--model") + 1] == backends.PHI4_MINI


def test_engine_image_mounts_the_model_read_only_and_ships_one_ort(tmp_path, monkeypatch):
    monkeypatch.setattr(backends.venvs, "wheelhouse", lambda requirements: tmp_path / "wheels")
    spec = backends.engine_for("docker", tmp_path / "onnx")
    kw = deploy.docker_run_kwargs(spec, "slm-deploy-lab/onnx-engine:local", 18080, gpu_available=False)
    assert kw["volumes"] == {str(tmp_path / "onnx"): {"bind": "/models", "mode": "ro"}}
    assert kw["command"] == ["--model", "/models/genai-int4", "--served-model-name", backends.SERVED_NAME]
    assert kw["ports"] == {"8080/tcp": ("127.0.0.1", 18080)} and kw["mem_limit"] == "4g"
    assert set(spec.build_files) >= {"compose/onnx-engine/Dockerfile", "wheels", "helpers/slm_engine.py",
                                     "helpers/chat_format.py"}
    pins = [line.split("==")[0] for line in (backends.ENGINE_DIR / "requirements.txt").read_text().splitlines()
            if "==" in line]
    assert "onnxruntime" in pins and not {"onnxruntime-gpu", "optimum", "torch", "transformers"} & set(pins)
    dockerfile = (backends.ENGINE_DIR / "Dockerfile").read_text()
    assert "USER engine" in dockerfile and "--no-index" in dockerfile


def test_engine_runs_locally_from_the_kernel_python(tmp_path):
    spec = backends.engine_for("local", tmp_path)
    assert spec.local_command[1:3] == ["-m", "helpers.slm_engine"]
    assert spec.local_command[spec.local_command.index("--model") + 1] == str(tmp_path / "genai-fp32")


def test_ollama_image_is_pinned_with_a_volume_and_gpu_only_when_present():
    for gpu, available in ((True, True), (True, False), (False, True)):
        spec = backends.ollama_docker(gpu=gpu)
        kw = deploy.docker_run_kwargs(spec, spec.image, 21434, available)
        assert kw["image"].startswith("ollama/ollama:") and not kw["image"].endswith(":latest")
        assert kw["volumes"] == {"ollama": {"bind": "/root/.ollama", "mode": "rw"}}
        assert kw["ports"] == {"11434/tcp": ("127.0.0.1", 21434)} and kw["command"] is None
        assert ("device_requests" in kw) == (gpu and available)
        assert spec.health_path == "/" and spec.api == "ollama"  # no curl in the image: checked from outside
    assert "mem_limit" not in deploy.docker_run_kwargs(backends.ollama_docker(True), "x", 1, True)
    assert deploy.docker_run_kwargs(backends.ollama_docker(False), "x", 1, False)["mem_limit"] == "8g"


def test_ollama_standin_runs_locally(tmp_path):
    spec = backends.ollama_local(tmp_path / "models", tmp_path / "library")
    assert spec.local_command[1:3] == ["-m", "helpers.ollama_standin"] and spec.name == "ollama-standin"
