"""Running a backend: what to run (``spec``), as a container or a local process (``runtimes``), compose
stacks and their lint (``compose``, ``compose_lint``), Kubernetes manifests (``k8s``).
"""
