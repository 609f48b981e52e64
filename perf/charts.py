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


def _lines(path: Path, title: str, series: dict, xlabel: str, ylabel: str, *, log_x: bool = False,
           log_y: bool = False) -> Path:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    if log_x:
        ax.set_xscale("log", base=2)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
        marks = {"p50": "p50_us", "p99": "p99_us", "p99.9": "p99_9_us"}
        series = {name: (list(marks), [v[m] for m in marks.values()]) for name, v in res["latency"].items()}
        made.append(_lines(out / "latency.png", "Call latency with the writer running", series,
                           "", "µs per call", log_y=True))
    if "scaling" in res:
        series = {name: ([int(n) for n in pts], [pts[n] or 0 for n in pts]) for name, pts in res["scaling"].items()}
        made.append(_lines(out / "scaling.png", "End to end by number of producers", series,
                           "producer processes", "records/s", log_x=True))
    return made
