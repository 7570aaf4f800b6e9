"""The notebook side: a chapter's start and checks (``chapter``, ``summary``), labs' self-checks, widgets,
the instructor's dashboard and presentation mode, notebook 06's stack, and the runner that executes
the workbook with papermill. The top layer: nothing below imports it.
"""
