"""ipywidgets for learners who would rather click than edit; static under papermill."""
from __future__ import annotations

from helpers.environment import RUNTIMES


def runtime_picker(default: str):
    """Toggle buttons for the runtime; later cells read ``.value``."""
    import ipywidgets as w

    return w.ToggleButtons(options=list(RUNTIMES), value=default, description="runtime",
                           tooltips=["backends as local processes on phi4-nano (offline)",
                                     "official images through Docker, real Phi-4-mini (online)"])


def prompt_box(answer, placeholder: str = "What is 17 + 25?"):
    """A prompt box and button that show ``answer(prompt)`` below them."""
    import ipywidgets as w

    text = w.Text(value=placeholder, description="prompt", layout=w.Layout(width="70%"))
    button = w.Button(description="answer", button_style="primary")
    out = w.Output()

    def on_click(_):
        out.clear_output()
        with out:
            print(answer(text.value))

    button.on_click(on_click)
    return w.VBox([w.HBox([text, button]), out])
