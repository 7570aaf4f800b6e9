"""phi4-nano: the tiny model with Phi-4-mini's architecture that the lab trains (``training``), ships
(``phi4_nano``; weights in ``helpers/data/phi4-nano/``) and reports on (``report``).
"""
