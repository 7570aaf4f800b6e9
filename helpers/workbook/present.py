"""``make present``: the instructor's dashboard as an app without code (Voilà), for a live room.

Every backend is started once, here, with the deploy layer (or the instructor's running ones are
used: ``--endpoints`` / ``SLM_LAB_ENDPOINTS``, JSON backend -> URL); every page that Voilà serves
(notebooks/dashboard.ipynb, one kernel per page) races those same servers, so a reload or a second
viewer starts nothing. Where the backends do not fit in memory together, none is started here and the
page starts them one after another for each race. Kernels of pages closed without a goodbye are culled
after a few idle minutes. Ctrl-C (or SIGTERM) stops Voilà, its kernels and the backends started here.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers.workbook import chapter, dashboard
from helpers.system.paths import REPO

NOTEBOOK = REPO / "notebooks" / "dashboard.ipynb"
CULL_IDLE_S = 300  # a page's kernel with no browser connected for this long is shut down


def voila_command(port: int) -> list[str]:
    """Voilà serving the dashboard notebook on loopback, culling the kernels of closed pages."""
    return [str(Path(sys.executable).with_name("voila")), str(NOTEBOOK), "--no-browser", f"--port={port}",
            "--Voila.ip=127.0.0.1", "--show_tracebacks=True", "--MappingKernelManager.cull_interval=60",
            f"--MappingKernelManager.cull_idle_timeout={CULL_IDLE_S}"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model of the registry (default: notebook 00's choice)")
    parser.add_argument("--runtime", default="auto", choices=["local", "docker", "auto"])
    parser.add_argument("--port", type=int, default=8866)
    parser.add_argument("--endpoints", default=os.environ.get("SLM_LAB_ENDPOINTS"),
                        help='running backends as JSON, e.g. {"vllm": "http://127.0.0.1:8000"}; default: start them')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SIGTERM unwinds like Ctrl-C: the backends stop below

    lab = chapter.start("present", runtime=args.runtime, model=args.model)
    voila = None
    try:
        urls = dashboard.connect(lab, args.endpoints)
        if not urls:
            print("the backends do not fit in memory together: the page starts them one after another for each race "
                  "(open it in one browser tab only)", flush=True)
        env = {**os.environ, "SLM_LAB_ENDPOINTS": json.dumps(urls) if urls else "", "SLM_LAB_MODEL": lab.model.key,
               "SLM_LAB_RUNTIME": lab.runtime}
        print(f"presentation mode: open http://127.0.0.1:{args.port}/ (Ctrl-C stops it and the backends it started)",
              flush=True)
        voila = subprocess.Popen(voila_command(args.port), env=env)
        voila.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if voila and voila.poll() is None:
            voila.terminate()  # Voilà shuts its kernels down on SIGTERM
            voila.wait(30)
        lab.finish()

