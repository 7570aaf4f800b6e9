"""The layout shows the architecture: every module sits in a layer (helpers.LAYERS, bottom to top), imports run
downward only, no imports run in a circle, and what ships in an image imports nothing from the notebook side."""
import site
from importlib import metadata

import pytest

import helpers
from helpers.deploy.context import imports_of, source_files
from helpers.system.paths import REPO

ROOT = REPO / "helpers"
MODULES = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
           for p in sorted(ROOT.rglob("*.py"))}


def layer(module: str) -> int:
    """Where ``module`` sits (helpers/__init__.py, the index, below everything)."""
    parts = module.split(".")
    return -1 if len(parts) == 1 else helpers.LAYERS.index(parts[1])


def test_every_package_is_a_layer():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(helpers.LAYERS)
    assert all(module.split(".")[1] in helpers.LAYERS for module in MODULES if module != "helpers")


@pytest.mark.parametrize("module", [m for m in MODULES if m != "helpers"])
def test_no_module_imports_upward(module):
    upward = sorted(target for target in imports_of(MODULES[module]) if layer(target) > layer(module))
    assert not upward, f"{module} ({helpers.LAYERS[layer(module)]}) imports from a layer above it: {upward}"


def test_there_are_no_import_circles():
    graph = {module: {t for t in imports_of(path) if t in MODULES} - {module} for module, path in MODULES.items()}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert not circles, f"imports that run in a circle: {circles}"


@pytest.mark.parametrize("server", ["helpers.servers.engine.__main__", "helpers.servers.ollama_standin.__main__"])
def test_what_ships_in_an_image_imports_only_formats_system_and_servers(server):
    shipped = {path.split("/")[1] for path in source_files(server) if path.count("/") > 1}
    assert shipped <= {"formats", "system", "servers"}, shipped


def test_the_project_is_installed_as_a_package_not_through_a_pth_file():
    dist = metadata.distribution("slm-deploy-lab")
    scripts = {e.name for e in dist.entry_points if e.group == "console_scripts"}
    assert {"slm-engine", "ollama-standin", "slm-lab", "slm-lab-bench"} <= scripts
    assert not [p for d in site.getsitepackages() for p in __import__("pathlib").Path(d).glob("slm_deploy_lab.pth")]
