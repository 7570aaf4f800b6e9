"""One call to start a notebook: environment, runtime, model and summary (like fastbook's ``setup_book``).

    lab = chapter.start("01_vllm", summary_dir, runtime=runtime, model=model)

``runtime`` and ``model`` are the notebook's papermill parameters. ``"auto"`` / ``None`` take the
choice notebook 00 saved (``choice.json`` beside the summaries), else the defaults: runtime by
what the machine offers, model ``helpers.models.DEFAULT``.

Checks come in two kinds: ``lab.check`` for invariants (a server is healthy, an API has its
shape, a bad request is a 4xx) — always hard; ``lab.grade`` for answer quality — hard only
for a model whose answers are known (phi4-nano), a visible warning with the answer otherwise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from helpers import backends, models
from helpers.deploy import runtimes
from helpers.deploy.spec import BackendSpec, docker_command, docker_run_kwargs, local_command
from helpers.system import machine
from helpers.system.paths import RUNS
from helpers.workbook.summary import Summary

CHOICE = "choice.json"


def choice_path(summary_dir=None) -> Path:
    return Path(summary_dir or RUNS) / CHOICE


def save_choice(runtime: str, model: str, summary_dir=None) -> Path:
    """Remember the learner's runtime and model for the later notebooks."""
    path = choice_path(summary_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runtime": runtime, "model": model}))
    return path


def saved_choice(summary_dir=None) -> dict:
    path = choice_path(summary_dir)
    return json.loads(path.read_text()) if path.exists() else {}


@dataclass
class Chapter:
    notebook: str
    env: machine.Environment
    runtime: str
    model: models.ModelCard
    summary: Summary
    servers: list = field(default_factory=list)
    running: dict = field(default_factory=dict)  # backend name -> its deployment, while it runs

    @property
    def gpu(self) -> bool:
        """Whether the backends run on a GPU: the docker runtime where Docker has NVIDIA's runtime."""
        return self.env.nvidia_runtime and self.runtime == "docker"

    def check(self, check_id: str, text: str, condition: bool, detail="") -> None:
        """An invariant, recorded under ``check_id`` (what tests read) with ``text`` (what a reader reads); the
        notebook stops when it does not hold."""
        self.summary.check(check_id, condition, str(detail), text=text)

    def grade(self, check_id: str, text: str, ok: bool | None, answer="", detail="") -> None:
        """Answer quality: hard for a model with known answers, else a warning (the answer is recorded). ``ok`` None:
        the answer could not be graded here (generated code with no sandbox to run it in): recorded as such."""
        if ok is None:
            self.summary.note(check_id, False, str(detail), text, answer=str(answer)[:2000], soft=True, not_graded=True)
            print(f"– {text}: {detail}")
            return
        self.summary.grade(check_id, ok, str(detail), answer=str(answer)[:2000], hard=self.model.exact, text=text)

    def skip(self, what: str, reason: str) -> None:
        """Record that ``what`` did not run on this machine, and why (shown, and kept in the summary)."""
        skipped = self.summary.data["values"].setdefault("skipped", {})
        skipped[what] = reason
        self.summary.record("skipped", skipped)
        print(f"skipped: {what} — {reason}")

    def prepare(self, backend: str, progress: bool = True, card=None):
        """Check this machine can hold what ``backend`` needs of the model (``card``: the chapter's, or one with
        changed settings), then make (or find) that form."""
        entry, card = backends.get(backend), card or self.model
        models.require(card, entry.needs, self.env, gpu=self.gpu)
        return entry.prepare(card, self.runtime, progress, self.gpu)

    def spec(self, backend: str, progress: bool = True, card=None) -> BackendSpec:
        card = card or self.model
        return backends.get(backend).spec(card, self.runtime, self.gpu, self.prepare(backend, progress, card))

    def start(self, backend: str, timeout: float = 600, progress: bool = True,
              extra_args: list[str] | tuple[str, ...] = (), options: dict | None = None) -> runtimes.Deployment:
        """Start ``backend`` serving the model on this runtime; stopped by ``finish`` if still running.
        ``extra_args``: server flags added to its command line (e.g. vLLM's ``--max-model-len 256``). ``options``:
        the backend's settings for the model changed for this start (e.g. the engine's ``{"variant":
        "genai-int4"}``); such a deployment runs beside the backend's usual one: stop it with ``lab.stop(server)``."""
        spec = self.spec(backend, progress, self.model.with_backend_options(backend, **options) if options else None)
        if extra_args:
            spec.add_server_args(self.runtime, extra_args)
        backends.get(backend).setup(self.runtime, progress)
        try:
            server = runtimes.get(self.runtime).start(spec, timeout=timeout, progress=progress)
        except runtimes.DeployError as err:
            if "OOMKilled" not in str(err):
                raise
            need = models.ram_needed(self.model, backends.get(backend).needs)
            first, _, rest = str(err).partition("\n")
            raise runtimes.DeployError(
                f"{backend} {first}. {self.model.key} on {backend} measured {need:.1f} GB (the model card; "
                f"docs/memory.md), and its container's limit comes from that: if this machine's Docker has less "
                f"memory (Docker Desktop: Settings → Resources), give it more, or choose a smaller model.\n{rest}") from None
        self.servers.append(server)
        if not options:
            self.running[backend] = server
        return server

    def stop(self, backend: str | runtimes.Deployment) -> None:
        """Stop ``backend`` (a name, or a deployment ``start`` returned) and free its memory."""
        server = self.running.pop(backend) if isinstance(backend, str) else backend
        self.running = {name: running for name, running in self.running.items() if running is not server}
        server.stop()
        self.servers.remove(server)

    def fit_together(self) -> tuple[bool, str]:
        """Whether every backend of the registry fits in the memory free now at once: (True, why) or (False, why).
        Each backend's form of the model is made first, one at a time (``prepare``: raises ``ResourceError`` when
        one does not fit even alone, naming the models that would)."""
        needs = tuple(dict.fromkeys(n for entry in backends.BACKENDS.values() for n in entry.needs))
        for name in backends.BACKENDS:
            self.prepare(name)
        free = min(machine.memory_available_gb() + self.memory_held_gb(), self.env.memory_gb)
        need = models.ram_needed(self.model, needs, together=True)
        if need <= free:
            return True, f"all at once: {need:.1f} GB needed, {free:.1f} GB free"
        return False, (f"one after another: all at once would need {need:.1f} GB, {free:.1f} GB are free "
                       f"(the most now: {', '.join(machine.largest_programs())})")

    def memory_held_gb(self) -> float:
        """What this chapter's running backends hold (they are stopped before others start in turn)."""
        return sum(server.memory_bytes() for server in self.servers) / 2**30

    def serve_each(self, timeout: float = 600, progress: bool = True):
        """Every backend of the registry, as (name, server), the model provided to Ollama's API: all started at
        once where they fit together in the memory free now (left running until ``finish``), else one after
        another, each stopped before the next starts. The plan is printed and kept in the summary."""
        together, why = self.fit_together()
        self.summary.record("served", {"together": together, "why": why})
        print(f"serving the backends {why}")
        if together:
            servers = self.start_all(timeout, progress)
            yield from servers.items()
            return
        for name in backends.BACKENDS:
            server = self.start(name, timeout=timeout, progress=progress)
            backends.get(name).provide(self.model, server.base_url, progress=progress)
            try:
                yield name, server
            finally:
                self.stop(name)

    def switch_to(self, backend: str, timeout: float = 600):
        """``backend``'s client with it the only backend running (the one before is stopped first): how the
        dashboard races backends that do not fit together, one after another."""
        if backend not in self.running:
            for name in list(self.running):
                self.stop(name)
            server = self.start(backend, timeout=timeout, progress=False)
            backends.get(backend).provide(self.model, server.base_url, progress=False)
        return self.client(backend, self.running[backend])

    def start_all(self, timeout: float = 600, progress: bool = True) -> dict[str, runtimes.Deployment]:
        """Every backend of the registry at once (the model provided to Ollama's API)."""
        servers = {name: self.start(name, timeout=timeout, progress=progress) for name in backends.BACKENDS}
        for name, server in servers.items():
            backends.get(name).provide(self.model, server.base_url, progress=progress)
        return servers

    def show_device(self, backend: str, server) -> str:
        """Print (and record) what ``backend`` reports it computes on: "cpu", "gpu" or a share of the GPU."""
        device = backends.get(backend).device(server)
        print(f"{backends.get(backend).title} computes on: {device} (as it reports it)")
        self.summary.record("device", device)
        return device

    def client(self, backend: str, server, timeout: float = 600):
        """``backend``'s own client (``helpers.clients``) on ``server``, asking for this model."""
        return backends.get(backend).client(server.base_url, self.model, timeout)

    def commands(self, backend: str) -> dict[str, str]:
        """The copy-pasteable commands that start ``backend`` with this model: ``docker run`` on a GPU and on a
        CPU, and the local process (nothing is started). The docker lines name the official image; where no
        registry answers, the lab runs its local stand-in image with the same arguments instead."""
        entry, out = backends.get(backend), {}
        docker_path = entry.prepare(self.model, "docker", progress=False)
        lines = {}
        for gpu in (True, False):
            spec = entry.spec(self.model, "docker", gpu, docker_path)
            image = spec.image or spec.built_image
            lines[gpu] = docker_command(docker_run_kwargs(spec, image, spec.port, gpu_available=gpu), for_people=True)
        out |= ({"docker": lines[True]} if lines[True] == lines[False] else
                {"docker (GPU)": lines[True], "docker (CPU)": lines[False]})
        out["local"] = local_command(entry.spec(self.model, "local", False,
                                                entry.prepare(self.model, "local", progress=False)), 8000, for_people=True)
        return out

    def show_commands(self, backend: str) -> dict[str, str]:
        """``commands`` printed (and recorded): what a learner would type to start ``backend`` by hand."""
        lines = self.commands(backend)
        for where, line in lines.items():
            print(f"{where}:\n  {line}\n")
        self.summary.record(f"commands_{backend}", lines)
        return lines

    def raw_answer(self, backend: str, server, messages: list[dict], tools: list[dict] | None = None) -> str:
        """What the model writes for ``messages`` on ``server``, before any tool parser: the prompt rendered
        by the model's own chat template, completed raw (``/v1/completions``, or Ollama's raw mode)."""
        from helpers.measure import reference

        prompt = reference.prompt_text(self.model, messages, tools)
        return self.client(backend, server).raw(prompt, self.model.budget.chat_tokens)

    def tool_call_record(self, raw: str, parsed: list[dict], tools: list[dict]) -> dict:
        """The raw text beside the server's parsed ``tool_calls``, and the format the model used."""
        from helpers.formats import tool_formats

        seen = tool_formats.parse(raw, [t["function"]["name"] for t in tools])
        fmt, calls = seen.format, seen.calls
        if seen.malformed:
            fmt = f"{fmt or 'no well-formed call'}; malformed: {'; '.join(seen.malformed)}"
        record = {"raw": raw, "format_written": fmt, "format_asked": self.model.tool_format, "calls_in_raw": calls,
                  "parsed": [{"name": c["name"], "arguments": c["arguments"]} for c in parsed]}
        print(f"raw text ({fmt or 'no tool call'}):\n{raw}\n\nparsed tool_calls: {record['parsed']}")
        return record

    def verify_tool_call(self, backend: str, server, messages: list[dict], tools: list[dict], calls: list[dict],
                         expected: tuple[str, dict]) -> dict:
        """The server's parsed ``calls`` for ``messages`` beside the text the model wrote: recorded, checked (the
        server parsed what the model wrote; every call is valid against its tool's schema) and graded (the
        ``expected`` (name, arguments) call, alone)."""
        from helpers.tasks import grading

        record = self.tool_call_record(self.raw_answer(backend, server, messages, tools), calls, tools)
        self.summary.record("tool_call", record)
        self.check("tool-call-parsed", "the server parsed what the model wrote",
                   record["parsed"] == (record["calls_in_raw"] or []), record)
        schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
        self.check("tool-call-schema", "tool calls are valid against their schema",
                   all(c["name"] in schemas and not grading.check_arguments(c["arguments"], schemas[c["name"]])
                       for c in calls), calls)
        name, arguments = expected
        self.grade("tool-call", f"tool call {name}({', '.join(f'{k}={v}' for k, v in arguments.items())})",
                   [(c["name"], c["arguments"]) for c in calls] == [expected], record["raw"])
        return record

    def finish(self) -> dict:
        for server in self.servers:
            server.stop()
        self.running.clear()
        return self.summary.finish()


def resolve(runtime: str, model: str | None, env: machine.Environment, summary_dir=None) -> tuple[str, str]:
    """The runtime and model key a notebook runs with (explicit parameters, else notebook 00's choice)."""
    saved = saved_choice(summary_dir)
    runtime = saved.get("runtime", runtime) if runtime == "auto" else runtime
    model = model or saved.get("model") or models.DEFAULT
    return machine.resolve_runtime(runtime, env), models.get(model).key


def start(notebook: str, summary_dir=None, runtime: str = "auto", model: str | None = None,
          **parameters) -> Chapter:
    """Inspect the machine, settle runtime and model, open the notebook's summary."""
    env = machine.check_environment()
    runtime, model = resolve(runtime, model, env, summary_dir)
    card = models.get(model)
    summary = Summary(notebook, summary_dir, runtime=runtime, model=model, **parameters)
    summary.record("environment", env.as_dict())
    print(f"runtime: {runtime} | model: {card.describe()}")
    return Chapter(notebook, env, runtime, card, summary)
