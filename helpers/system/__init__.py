"""This machine: where the lab keeps files (paths, content-keyed cache), which CPUs are free, what the
machine offers (RAM, disk, Docker, GPU, registries), and the Python environments the project makes.
"""
