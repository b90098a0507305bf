"""The markdown table and the plot of a peers run (run.py's results)."""

from __future__ import annotations

from pathlib import Path


def _figure(value, digits=0, suffix="") -> str:
    return "" if value is None else f"{value:,.{digits}f}{suffix}"


def table(rows: list[dict], plate_max: float, drug_max: float) -> str:
    """One line per loader and setting; failures and rows not run keep their
    line, with the reason in the last column."""
    lines = [
        f"| loader | path | setting | parallelism | data | cells/s | MB/s | plate entropy (max {plate_max:.2f}) "
        f"| drug entropy (max {drug_max:.2f}) | peak RSS MiB | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = r.get("error") or r.get("note") or ""
        lines.append(
            f"| {r['loader']} | {r.get('path', '')} | {r.get('setting', '')} | {r.get('parallelism', '')} | {r.get('data', '')} "
            f"| {_figure(r.get('cells_per_s'))} | {_figure(r.get('mb_per_s'))} | {_figure(r.get('plate_entropy'), 2)} "
            f"| {_figure(r.get('drug_entropy'), 2)} | {_figure(r.get('peak_rss_mib'))} | {note} |"
        )  # fmt: skip
    return "\n".join(lines)


def label(r: dict) -> str:
    parts = [r["loader"], r.get("path"), r.get("setting"), r.get("parallelism"), r.get("data_short")]
    return ", ".join(p for p in parts if p)


def plot(rows: list[dict], ceilings: list[dict], plate_max: float, path: Path, title: str) -> None:
    """Throughput (log scale) against mean per-minibatch plate entropy: one
    numbered point per measured loader and setting (the key beside the plot
    names them; the points crowd near the maximum entropy), ceilings as
    horizontal lines, the entropy maximum as a vertical one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.get("cells_per_s") and r.get("plate_entropy") is not None]
    colours = {"cellflight": "tab:blue", "scDataset": "tab:orange", "AnnLoader": "tab:green"}
    fig, (ax, key) = plt.subplots(1, 2, figsize=(15, 8), gridspec_kw={"width_ratios": [3, 2]})
    lines = []
    for n, r in enumerate(points, 1):
        ax.scatter(r["plate_entropy"], r["cells_per_s"], color=colours.get(r["loader"], "tab:gray"), zorder=3)
        ax.annotate(str(n), (r["plate_entropy"], r["cells_per_s"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
        lines.append(f"{n:2d}  {label(r)}: {r['cells_per_s']:,.0f} cells/s")
    for c, style in zip(ceilings, ["-", "--", ":", "-."]):
        ax.axhline(c["cells_per_s"], color="black", linestyle=style, linewidth=0.8, label=f"{c['name']}: {c['cells_per_s']:,.0f} cells/s")
    ax.axvline(plate_max, color="gray", linewidth=0.6)
    ax.set_xlim(-0.1, plate_max + 0.2)
    ax.set_yscale("log")
    ax.set_xlabel(f"mean per-minibatch Shannon entropy of plate (bits; max {plate_max:.2f})")
    ax.set_ylabel("cells/s (log scale)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", linewidth=0.3)
    for loader, colour in colours.items():
        ax.scatter([], [], color=colour, label=loader)
    ax.legend(loc="upper left", fontsize=7)
    key.axis("off")
    key.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=6.5, transform=key.transAxes)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def bars(rows: list[dict], path: Path, title: str) -> None:
    """Cells/s as horizontal bars, one per row that was measured, in the
    order given (trainer.py's table), figures written beside the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r.get("cells_per_s")]
    names = [", ".join(p for p in (r["path"], r.get("request"), r.get("setting")) if p) for r in measured]
    speeds = [r["cells_per_s"] for r in measured]
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(measured) + 1.2))
    colours = ["tab:blue" if "pyarrow" in n or "CellDataset" in n or "README" in n else "tab:orange" for n in names]
    ax.barh(range(len(measured)), speeds, color=colours)
    for y, speed in enumerate(speeds):
        ax.text(speed, y, f" {speed:,.0f}", va="center", fontsize=8)
    ax.set_yticks(range(len(measured)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("cells/s (batch 64, warm page cache)")
    ax.set_xlim(0, max(speeds) * 1.15)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


if __name__ == "__main__":
    # python report.py bars RESULTS.json PLOT.png: a run's bars, drawn by a
    # python that has matplotlib (the peers' venv) from the JSON it wrote.
    import json
    import sys

    _, kind, results, out = sys.argv
    report = json.loads(Path(results).read_text())
    machine = report["machine"]
    bars(report["results"], Path(out), f"{machine['cores']} cores ({machine['cpu']}), {machine['date']}: one run")
