"""Plot a benchmark results file: p50 and p99 per measurement, against its target."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def plot_bench(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())["results"]
    names = sorted(data)
    p50 = [data[n]["p50_us"] for n in names]
    p99 = [data[n]["p99_us"] for n in names]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(names) + 1.5))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], p50, height=0.4, label="p50", color="#1f4e8c")
    ax.barh([i - 0.2 for i in y], p99, height=0.4, label="p99", color="#9ab7e0")
    for i, name in enumerate(names):
        for key, mark in (("target_p50_us", "|"), ("target_p99_us", "x")):
            if key in data[name]:
                ax.plot(data[name][key], i, marker=mark, color="#c62828", markersize=12)
    ax.set_yticks(list(y), names)
    ax.set_xscale("log")
    ax.set_xlabel("microseconds (log); red marks: targets")
    ax.legend(loc="lower right")
    ax.set_title(path.stem)
    fig.tight_layout()
    out = path.with_suffix(".png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(plot_bench(Path(sys.argv[1])))
