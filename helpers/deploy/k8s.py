"""Kubernetes manifests for the engine (compose/k8s/): rendered from values and checked without a cluster.

The checks are what a reviewer (and the compose lint) asks of a production workload: every
document has apiVersion/kind/metadata.name and a known kind; the Deployment's selector
matches its pod labels and the Service selects those pods; every container has pinned
image, resource requests and limits, readiness and liveness probes, runs as non-root with a
read-only root filesystem, no privilege escalation and all capabilities dropped; mounted
volumes exist; the HPA targets the Deployment.
"""
from __future__ import annotations

from pathlib import Path
from string import Template

import yaml

from helpers.deploy.spec import memory_limit
from helpers.system.paths import REPO

MANIFESTS = REPO / "compose" / "k8s" / "engine.yaml"
DEFAULTS = {"namespace": "slm-lab", "image": "slm-deploy-lab/onnx-engine:local", "replicas": 2, "max_replicas": 6,
            "variant": "genai-int4", "served_name": "phi4-mini", "context": 4096, "cpu": "1", "memory": "8Gi",
            "models_storage": "10Gi"}
KINDS = {("v1", "Namespace"), ("v1", "PersistentVolumeClaim"), ("v1", "Service"), ("apps/v1", "Deployment"),
         ("autoscaling/v2", "HorizontalPodAutoscaler")}


def values_for(card, replicas: int, variant: str) -> dict:
    """The template's values for model ``card`` served as ONNX ``variant``: served name, context, memory, storage."""
    return {"replicas": replicas, "variant": variant, "served_name": card.served_name,
            "context": card.context, "memory": memory_limit(card.needs["onnx"].ram).replace("g", "Gi"),
            "models_storage": f"{max(1, round(card.needs['onnx'].disk * 2))}Gi"}


def render(values: dict | None = None, template: Path = MANIFESTS) -> list[dict]:
    """The manifests with ``values`` (over DEFAULTS) filled in; a missing value is an error."""
    text = Template(template.read_text()).substitute({**DEFAULTS, **(values or {})})
    return [doc for doc in yaml.safe_load_all(text) if doc]


def problems(docs: list[dict]) -> list[str]:
    """What is wrong with ``docs`` (empty when they pass every check)."""
    found = []
    by_kind = {}
    for doc in docs:
        name = (doc.get("metadata") or {}).get("name")
        if not name or (doc.get("apiVersion"), doc.get("kind")) not in KINDS:
            found.append(f"{doc.get('kind')}/{name}: unknown apiVersion/kind or no metadata.name")
        by_kind.setdefault(doc.get("kind"), []).append(doc)
    for deploy in by_kind.get("Deployment", []):
        spec, name = deploy["spec"], deploy["metadata"]["name"]
        pod = spec["template"]
        labels = pod["metadata"].get("labels", {})
        if not set(spec["selector"]["matchLabels"].items()) <= set(labels.items()):
            found.append(f"Deployment/{name}: selector does not match the pod labels")
        if not isinstance(spec.get("replicas"), int) or spec["replicas"] < 1:
            found.append(f"Deployment/{name}: replicas must be a positive integer")
        pod_security = pod["spec"].get("securityContext", {})
        volumes = {v["name"] for v in pod["spec"].get("volumes", [])}
        for c in pod["spec"]["containers"]:
            where = f"Deployment/{name}/{c['name']}"
            image = c.get("image", "")
            if ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest"):
                found.append(f"{where}: image {image!r} not pinned")
            res = c.get("resources", {})
            if not (res.get("requests") and res.get("limits")):
                found.append(f"{where}: resource requests and limits needed")
            if not (c.get("readinessProbe") and c.get("livenessProbe")):
                found.append(f"{where}: readiness and liveness probes needed")
            sec = {**pod_security, **c.get("securityContext", {})}
            if not sec.get("runAsNonRoot") or sec.get("allowPrivilegeEscalation", True) or \
                    not sec.get("readOnlyRootFilesystem") or "ALL" not in sec.get("capabilities", {}).get("drop", []):
                found.append(f"{where}: must run as non-root, read-only, no privilege escalation, capabilities dropped")
            for mount in c.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    found.append(f"{where}: mounts unknown volume {mount['name']!r}")
        for svc in by_kind.get("Service", []):
            if not set(svc["spec"]["selector"].items()) <= set(labels.items()):
                found.append(f"Service/{svc['metadata']['name']}: selects no pod of Deployment/{name}")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) not in {("Deployment", d["metadata"]["name"]) for d in by_kind.get("Deployment", [])}:
            found.append(f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: targets no Deployment here")
        if hpa["spec"]["minReplicas"] > hpa["spec"]["maxReplicas"]:
            found.append(f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: minReplicas > maxReplicas")
    return found


def to_yaml(docs: list[dict]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)
