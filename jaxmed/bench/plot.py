"""The conv/pool roofline plot: each layer's fraction of its ceiling, forward and backward.

One panel per (batch size, dtype) of a `jaxmed.bench.conv_pool` report; one group of
bars per layer and implementation: forward, input gradient, weight gradient.
Convolutions are shown as a fraction of the float32 matmul, pooling as a fraction of
the memory-copy bandwidth (marked "[copy]"). Headless (Agg canvas, no pyplot state).
"""

from __future__ import annotations

import pathlib

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxmed.bench.layers import POOL_KINDS

DIRECTIONS = (("forward", "forward", "#4477aa"), ("input_grad", "input gradient", "#ee6677"),
              ("weight_grad", "weight gradient", "#228833"))
TARGET_FRACTION = 0.5  # the goal for every dcgan128 convolution


def _label(row: dict) -> str:
    plain = row["impl"] in ("lax.conv", "jaxmed.upsample_conv", "jaxmed.max_pool", "nnx.avg_pool")
    impl = "" if plain else f" [{row['impl']}]"
    ceiling = " [copy]" if row["kind"] in POOL_KINDS else ""
    return f"{row['model']} {row['layer']}{impl}{ceiling}"


def plot_roofline_fractions(report: dict, path: str | pathlib.Path) -> pathlib.Path:
    """Writes the per-layer fraction-of-ceiling bar chart of a conv-pool report as a PNG.

    Args:
      report: the output of `jaxmed.bench.conv_pool.run_conv_pool` (or its JSON, loaded).
      path: where to write the PNG (parent folders are created).

    Returns:
      The path written.
    """
    rows = report["rows"]
    if not rows:
        raise ValueError("the report has no rows to plot")
    panels = list(dict.fromkeys((row["batch"], row["dtype"]) for row in rows))
    per_panel = max(sum(1 for row in rows if (row["batch"], row["dtype"]) == panel) for panel in panels)
    fig = Figure(figsize=(4.0 + 6.0 * len(panels), 1.6 + 0.32 * per_panel), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=False)[0]
    ceilings = report["ceilings"]
    for ax, (batch, dtype) in zip(axes, panels):
        panel_rows = [row for row in rows if (row["batch"], row["dtype"]) == (batch, dtype)]
        positions = np.arange(len(panel_rows))
        height = 0.8 / len(DIRECTIONS)
        for index, (key, label, color) in enumerate(DIRECTIONS):
            values = [row[key]["fraction"] if key in row else np.nan for row in panel_rows]
            ax.barh(positions + (index - 1) * height, values, height, label=label, color=color)
        ax.axvline(TARGET_FRACTION, color="0.3", linestyle="--", linewidth=1)
        ax.axvline(1.0, color="0.3", linewidth=1)
        ax.set_yticks(positions, [_label(row) for row in panel_rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("fraction of the float32 matmul ([copy]: of the copy bandwidth)")
        ax.set_title(f"batch {batch}, {dtype}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    environment = report.get("environment", {})
    fig.suptitle(f"conv/pool layers against ceilings measured in the same run: float32 matmul "
                 f"{ceilings['matmul_gflops']['float32']:.0f} GFLOP/s, copy {ceilings['copy_gbs']:.1f} GB/s\n"
                 f"{environment.get('device_kind', '')} {environment.get('cpu_model') or ''}, "
                 f"{environment.get('usable_cores')} cores, load average {environment.get('load_average')}",
                 fontsize=9)
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110)
    return out
