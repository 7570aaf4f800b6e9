"""Execute the workbook's notebooks with papermill, in order, into ``runs/``.

``slm-lab`` (``make lab``) runs every ``notebooks/NN_*.ipynb`` on the runtime ``--runtime`` names (default
``auto``: Docker where a daemon answers and Docker Hub is reachable, else local processes) with the default
model (``--model`` picks another). It first says which runtime and why, and what will be downloaded or built;
it writes each executed copy and its summary to ``runs/<timestamp>/`` and a ``workbook.json`` over all of them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from helpers import models
from helpers.system import machine
from helpers.system.paths import REPO, RUNS
from helpers.workbook import doctor
from helpers.workbook.summary import load as load_summary

NOTEBOOKS = REPO / "notebooks"
LABS = REPO / "labs"
DEFAULT_PARAMETERS = {"runtime": "local", "model": models.DEFAULT}  # what a test's run_notebook gets unless told


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the message holds the cell's source and its error."""


def discover(folder: Path = NOTEBOOKS) -> list[Path]:
    """The numbered notebooks of ``folder`` in order (``00_setup.ipynb``, ``01_…``)."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: Path, out_dir: Path, parameters: dict | None = None, timeout: int = 1800) -> dict:
    """Execute ``path`` with papermill into ``out_dir``; return the summary it wrote.

    Raises ``NotebookFailed`` with the failing cell's source and error.
    """
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    params = {**DEFAULT_PARAMETERS, **(parameters or {}), "summary_dir": str(out_dir)}
    output = out_dir / path.name
    try:
        pm.execute_notebook(str(path), str(output), parameters=params, cwd=str(path.parent),
                            execution_timeout=timeout, progress_bar=False, kernel_name="python3",
                            kernel_manager_class=_kernel_manager_class())
    except pm.PapermillExecutionError as err:
        raise NotebookFailed(f"{path.name}: cell {err.exec_count} failed\n--- source ---\n"
                             f"{_failing_source(output, err.exec_count)}\n--- error ---\n"
                             f"{err.ename}: {err.evalue}") from None
    return load_summary(out_dir / f"{path.stem}.summary.json")


def _kernel_manager_class():
    """On Linux the kernel talks over Unix sockets (no TCP port, and no "running over TCP without encryption"
    warning per notebook); elsewhere jupyter_client's default, loopback TCP."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    if not sys.platform.startswith("linux"):
        return AsyncKernelManager
    return type("IPCKernelManager", (AsyncKernelManager,),
                {"transport": CaselessStrEnum(["tcp", "ipc"], default_value="ipc")})


def _failing_source(executed: Path, exec_count: int) -> str:
    cells = json.loads(executed.read_text())["cells"]
    return next(("".join(c["source"]) for c in cells if c.get("execution_count") == exec_count), "?")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="auto", choices=["local", "docker", "auto"])
    parser.add_argument("--model", default=DEFAULT_PARAMETERS["model"], choices=sorted(models.MODELS))
    parser.add_argument("--only", nargs="*", help="notebook name prefixes to run, e.g. 00 01")
    args = parser.parse_args(argv)
    env = machine.check_environment()
    args.runtime, why = machine.runtime_choice(args.runtime, env)
    print(f"runtime: {args.runtime} ({why})")
    print(f"model: {args.model} — {models.get(args.model).title}")
    print("downloaded or built on first use:")
    for what, size in doctor.downloads(models.get(args.model), args.runtime, env):
        print(f"  {what:<22} {size}")
    out_dir = RUNS / time.strftime("%Y%m%d-%H%M%S")
    results, failed = {}, False
    for notebook in discover():
        if args.only and not any(notebook.name.startswith(p) for p in args.only):
            continue
        start = time.perf_counter()
        print(f"▶ {notebook.name} …", flush=True)
        try:
            summary = run_notebook(notebook, out_dir, {"runtime": args.runtime, "model": args.model})
            results[notebook.name] = {"ok": True, "checks": len(summary["checks"])}
        except NotebookFailed as err:
            results[notebook.name], failed = {"ok": False, "error": str(err)}, True
            print(err, file=sys.stderr)
        results[notebook.name]["seconds"] = round(time.perf_counter() - start, 1)
        print(f"  {'ok' if results[notebook.name]['ok'] else 'FAILED'} in {results[notebook.name]['seconds']} s")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "workbook.json").write_text(json.dumps(results, indent=2))
    print(f"executed notebooks and summaries ({args.model}, {args.runtime} runtime): {out_dir}")
    return 1 if failed else 0

