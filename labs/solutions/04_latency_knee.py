"""Solution: lab 4."""


def knee(rows, factor=2.0):
    base = next(r["E2E p90 ms"] for r in rows if r["concurrency"] == 1)
    return next((r["concurrency"] for r in sorted(rows, key=lambda r: r["concurrency"])
                 if r["E2E p90 ms"] >= factor * base), None)
