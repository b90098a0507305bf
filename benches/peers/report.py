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
