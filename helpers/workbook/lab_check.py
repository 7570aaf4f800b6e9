"""Labs: TODO markers, the self-check that tells a learner what is still wrong, and solutions.

A lab's TODO functions call ``todo(hint)``; its last cells run ``SelfCheck.expect`` for each
goal and ``report()``, which prints a checklist with a hint for every open item and never
raises, so an unfinished lab runs to the end. ``load_solution`` executes
``labs/solutions/<lab>.py`` into the notebook's namespace (tests run every lab with and
without it).
"""
from __future__ import annotations

from helpers.system.paths import REPO
from helpers.workbook.summary import Summary

SOLUTIONS = REPO / "labs" / "solutions"


class NotDone(NotImplementedError):
    """A TODO the learner has not filled in yet."""


def todo(hint: str):
    raise NotDone(hint)


def load_solution(lab: str, namespace: dict) -> None:
    """Define the lab's solution functions in ``namespace`` (the notebook's globals)."""
    path = SOLUTIONS / f"{lab}.py"
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    print(f"solution loaded from {path.relative_to(REPO)}")


class SelfCheck:
    def __init__(self, summary: Summary):
        self.summary = summary
        self.results: list[tuple[str, bool, str]] = []

    def expect(self, goal: str, test, hint: str, soft: bool = False) -> bool:
        """Run ``test()`` (True/False, or (ok, detail)); a TODO or an error is a failed goal with ``hint``.

        ``soft``: a goal that depends on the model's answer rather than the learner's code (a real model may
        get it wrong with a correct solution); it is reported, and recorded as a score.
        """
        try:
            outcome = test()
            ok, detail = outcome if isinstance(outcome, tuple) else (bool(outcome), "")
        except NotDone as err:
            ok, detail = False, f"not done yet — {err}"
        except Exception as err:  # the learner's code raised: say what, keep checking
            ok, detail = False, f"{type(err).__name__}: {str(err)[:300]}"
        self.results.append((goal, ok, detail if ok else f"{detail} → {hint}" if detail else hint))
        self.summary.note(goal, ok, str(detail), hint=hint, soft=soft)
        return ok

    def report(self) -> None:
        """Print the checklist and mark the run complete (it ran to the end); the goals reached are recorded."""
        for goal, ok, detail in self.results:
            print(f"{'✔' if ok else '✗'} {goal}" + ("" if ok else f"\n    {detail}"))
        done = sum(ok for _, ok, _ in self.results)
        print(f"\n{done} of {len(self.results)} goals reached" + (" — well done!" if done == len(self.results) else ""))
        self.summary.record("goals_reached", [done, len(self.results)])
        self.summary.finish()
