"""What a serving backend is: everything about one backend in one class, and the settings it reads per model.

A backend subclass says which API it speaks (its client), which forms of a model it needs (the resource
guard adds them up), how it starts on each runtime (``spec``: a ``helpers.deploy.spec.BackendSpec``), how
the form it loads is made (``prepare``), what it needs before its first start (``setup``), how a model
gets into a running server (``provide``), its facts for the comparison table, and — where the seed
tutorial named it — its column in the seed's table and the seed's flaws for it. Per model it reads
``card.backend_options[name]`` into its own ``Options`` dataclass (unknown keys fail loudly).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from helpers import clients
from helpers.deploy.spec import BackendSpec
from helpers.system import venvs


# The platforms a backend may be published for, by the names platform.system() and the wheels use
LINUX_X86, LINUX_ARM = ("Linux", "x86_64"), ("Linux", "aarch64")
MAC_ARM, MAC_X86 = ("Darwin", "aarch64"), ("Darwin", "x86_64")


@dataclass(frozen=True)
class SeedFacts:
    """Where the seed tutorial named a backend: its column in the seed's framework table, and its flaws there."""

    column: str
    flaws: dict = field(default_factory=dict)  # the seed's mistake -> what goes wrong, and the fix


@dataclass(frozen=True)
class Options:
    """A backend's settings for one model (none by default)."""


class Backend:
    name: str
    title: str
    api: str  # "openai" or "ollama": which client talks to it (helpers.clients)
    needs: tuple[str, ...]  # the model card's needs it draws on (the resource guard adds them up)
    facts: dict  # for the comparison table: API, quantisation
    install: dict  # runtime -> what its first start needs
    streams_tool_calls: bool
    seed: SeedFacts | None = None  # None: the seed tutorial never named it
    # runtime -> the (system, architecture) pairs its packages or images are published for (wheel tags on PyPI,
    # image tags and docs; a Mac's Docker runs linux/aarch64 containers, WSL2 is Linux x86_64)
    platforms: dict = {}
    options_type: type = Options
    local_venv: venvs.VenvRecipe | None = None  # its own virtualenv for the local runtime (conflicting pins)

    def options(self, card) -> Options:
        """This backend's settings for ``card`` (``card.backend_options[name]`` over the defaults)."""
        return self.options_type(**card.backend_options.get(self.name, {}))

    def spec(self, card, runtime: str, gpu: bool = False, model_path: Path | None = None) -> BackendSpec:
        """How ``card`` runs on ``runtime`` ("local": a process; "docker": a container); ``model_path`` is the
        form of the model ``prepare`` made. Nothing here downloads."""
        raise NotImplementedError

    def prepare(self, card, runtime: str, progress: bool = True, gpu: bool = False) -> Path | None:
        """Make (or find cached) the form of ``card`` this backend loads (``gpu``: when it will run on a GPU); None
        where the image fetches it."""
        return card.hf_folder(progress)

    def loads(self, card) -> str:
        """What it loads of ``card``, in words (notebook 00's overview)."""
        return "the Hugging Face folder"

    def setup(self, runtime: str, progress: bool = True) -> None:
        """What the runtime needs before the first start: the backend's own virtualenv for the local runtime."""
        if runtime == "local" and self.local_venv:
            venvs.ensure_venv(self.local_venv, progress)

    def device(self, server) -> str:
        """What the running ``server`` (a deployment of this backend) computes on, as the backend reports it:
        "cpu", "gpu", or the model's share in GPU memory ("60% gpu")."""
        raise NotImplementedError

    def provide(self, card, base_url: str, progress: bool = True) -> None:
        """Make ``card`` available in the running server at ``base_url`` (servers that load it at start: nothing)."""

    def start_alone(self, card, runtime: str, extra_args: list[str] | tuple[str, ...] = (), timeout: float = 900,
                    progress: bool = True):
        """This backend serving ``card`` on ``runtime`` for a benchmark script (no notebook, no GPU): its form
        made, its environment set up, ``extra_args`` on its command line, the model provided. A deployment: stop
        it (or use it as a context manager)."""
        from helpers.deploy import runtimes

        self.setup(runtime, progress)
        spec = self.spec(card, runtime, False, self.prepare(card, runtime, progress))
        if extra_args:
            spec.add_server_args(runtime, extra_args)
        server = runtimes.get(runtime).start(spec, timeout=timeout, progress=progress)
        self.provide(card, server.base_url, progress)
        return server

    def client(self, base_url: str, card, timeout: float = 600):
        """The client for this backend's API, asking for ``card``'s served name."""
        return clients.connect(self.api, base_url, card.served_name, timeout)
