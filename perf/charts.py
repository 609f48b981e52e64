"""PNG charts of a perf run (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first


def _bar(path: Path, title: str, labels: list[str], values: list[float], unit: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.45 * len(labels)))
    bars = ax.barh(labels, values, color=["#2b6cb0" if lb.startswith("logger_system") else "#a0aec0"
                                           for lb in labels])
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title)
    for b, v in zip(bars, values):
        ax.text(b.get_width(), b.get_y() + b.get_height() / 2, f" {v:,.0f}" if v >= 10 else f" {v:.2f}",
                va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_charts(res: dict, out: Path) -> list[Path]:
    made = []
    e = res["end_to_end"]["contenders"]
    rows = [(k, v["median_records_per_s"]) for k, v in e.items() if v.get("median_records_per_s")]
    if rows:
        p = out / "end_to_end.png"
        _bar(p, f"End to end, {res['end_to_end']['producers']} producers (records/s, median)",
             [r[0] for r in rows], [r[1] for r in rows], "records/s")
        made.append(p)
    if "sanitizer" in res:
        labels, values = [], []
        for corpus, r in res["sanitizer"].items():
            labels += [f"logger_system ({corpus})", f"naive re.sub ({corpus})"]
            values += [r["ours_mb_s"], r["naive_mb_s"]]
        p = out / "sanitizer.png"
        _bar(p, "Sanitizer stage (payload MB/s)", labels, values, "MB/s")
        made.append(p)
    if "latency" in res:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        marks = ["p50_us", "p99_us", "p99_9_us"]
        for name, v in res["latency"].items():
            ax.plot(["p50", "p99", "p99.9"], [v[m] for m in marks], marker="o", label=name)
        ax.set_yscale("log")
        ax.set_ylabel("µs per call")
        ax.set_title("Call latency with the writer running")
        ax.legend()
        fig.tight_layout()
        p = out / "latency.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    if "scaling" in res:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        for name, points in res["scaling"].items():
            xs = [int(n) for n in points]
            ax.plot(xs, [points[str(n)] or 0 for n in xs], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("producer processes")
        ax.set_ylabel("records/s")
        ax.set_title("End to end by number of producers")
        ax.legend()
        fig.tight_layout()
        p = out / "scaling.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    return made
