"""Solution: lab 3."""


def choose(rows, min_match):
    fit = [r for r in rows if r["variant"] != "pytorch" and "error" not in r and r["greedy_match"] >= min_match]
    if not fit:
        return None
    return min(fit, key=lambda r: (r["size_mb"], -r["decode_tok_s"]))["variant"]
