"""phi4-nano's training report: as text, and as plots (loss, held-out accuracy while training and at the end)."""
from __future__ import annotations


def plot_report(rep: dict):
    """Training loss, held-out accuracy per family as training went on, and the final held-out accuracy."""
    import matplotlib.pyplot as plt

    fig, (loss_ax, curve_ax, acc_ax) = plt.subplots(1, 3, figsize=(15, 3.5))
    loss_ax.plot([i * 10 for i in range(len(rep["loss_curve"]))], rep["loss_curve"])
    loss_ax.set(title="training loss (answer tokens, mean of 10 steps)", xlabel="step", ylabel="cross-entropy",
                yscale="log")
    families = list(rep["accuracy"])
    curve = rep.get("heldout_curve", [])
    for family in families:
        curve_ax.plot([p["step"] for p in curve], [p[family] for p in curve], marker=".", label=family)
    curve_ax.set(title="held-out accuracy while training", xlabel="step", ylim=(0, 1.02))
    curve_ax.legend(fontsize="small")
    acc_ax.barh(families, [rep["accuracy"][f]["accuracy"] for f in families], color="tab:green")
    acc_ax.set(title="held-out accuracy, final", xlim=(0, 1))
    fig.tight_layout()
    return fig


def format_report(rep: dict) -> str:
    """A short text table of a report's accuracy and timing."""
    lines = [f"phi4-nano {rep['key']}: {rep['params']:,} params, built in {rep['seconds']['total']} s "
             f"(tokenizer {rep['seconds']['tokenizer']} s, training {rep['seconds']['train']} s, "
             f"grading {rep['seconds']['evaluate']} s) on {rep['threads']} threads of {rep.get('cpu', 'a CPU')}, "
             f"torch {rep['torch']}",
             f"{'family':<14}{'n':>5}{'accuracy':>10}"]
    lines += [f"{family:<14}{r['n']:>5}{r['accuracy']:>10.1%}" for family, r in rep["accuracy"].items()]
    return "\n".join(lines)
