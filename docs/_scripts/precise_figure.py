"""Draw how a precise reading narrows its interval, probe by probe (an SVG, stdlib only).

    python docs/_scripts/precise_figure.py [DATA.json] [OUT.svg]

DATA defaults to ``bench/precise_narrowing.json``, written by ``python -m
bench accuracy`` from a real run (one precise UDP reading over the emulated
80 ms path); OUT to ``docs/_static/precise_narrowing.svg``. Each probe is one bar: the
interval the readings so far prove, relative to the known truth (0), on a
symmetric-log scale so the first second and the last milliseconds both show.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 380, 70, 20, 56, 50
LABEL_GAP = 36  # px between round labels, so neighbouring ones never overlap
LINEAR = 0.001  # the scale is linear within +-1 ms, logarithmic beyond


def symlog(x: float) -> float:
    sign = 1 if x >= 0 else -1
    x = abs(x)
    return sign * (x / LINEAR if x <= LINEAR else 1 + math.log10(x / LINEAR))


def render(data: dict) -> str:
    probes = data["probes"]
    top = symlog(max(max(p["hi"] for p in probes), 1.0))
    bottom = symlog(min(min(p["lo"] for p in probes), -1.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y(value: float) -> float:
        return TOP + (top - symlog(value)) / (top - bottom) * plot_h

    step = plot_w / len(probes)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{LEFT}" y="20" font-size="13">Precise reading, {data["path"]}: '
        "the proven interval after each probe</text>",
        f'<text x="{LEFT}" y="38">final half-width {data["uncertainty"] * 1000:.1f} ms, '
        f"error {data['offset_error'] * 1000:+.2f} ms</text>",
    ]
    for tick in (-1, -0.1, -0.01, -0.001, 0, 0.001, 0.01, 0.1, 1):
        ty = y(tick)
        label = "0 (truth)" if tick == 0 else f"{tick * 1000:+g} ms"
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" '
            f'stroke="{"#444" if tick == 0 else "#ddd"}"/>'
        )
        out.append(f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{label}</text>')
    last_round, last_label = -1, -float("inf")
    for k, p in enumerate(probes):
        x = LEFT + k * step
        y1, y2 = y(p["hi"]), y(p["lo"])
        colour = ("#4878d0", "#ee854a", "#6acc64", "#d65f5f", "#956cb4", "#8c613c")[p["round"] % 6]
        out.append(
            f'<rect x="{x + 1:.1f}" y="{y1:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{max(y2 - y1, 0.5):.1f}" fill="{colour}"/>'
        )
        if p["round"] != last_round and x - last_label >= LABEL_GAP:
            out.append(f'<text x="{x + 1:.1f}" y="{HEIGHT - BOTTOM + 14}">r{p["round"]}</text>')
            out.append(f'<text x="{x + 1:.1f}" y="{HEIGHT - BOTTOM + 28}">{p["at"]:.1f}s</text>')
            last_label = x
        last_round = p["round"]
    out.append(
        f'<text x="{LEFT}" y="{HEIGHT - 6}">probe rounds (r0: the first reading) and '
        "when each began; one bar per probe</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else ROOT / "bench" / "precise_narrowing.json"
    target = (
        Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "_static" / "precise_narrowing.svg"
    )
    target.write_text(render(json.loads(source.read_text())))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
