"""Solution: lab 4."""


def knee(rows, factor=2.0):
    base = next(r["e2e_ms"]["p90"] for r in rows if r["concurrency"] == 1)
    return next((r["concurrency"] for r in sorted(rows, key=lambda r: r["concurrency"])
                 if r["e2e_ms"]["p90"] >= factor * base), None)
