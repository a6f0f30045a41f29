"""Make the precise-mode figure from a real run: ``docs/_static/precise.png``.

Starts this package's RFC 868 server on loopback with a clock set ahead by a
known amount (``--offset``, default 2.3137 s), then runs precise mode's probe
loop (``trio_timehttp._probing.refine`` with its ``OffsetEstimator``, the code
``query_time(..., precise=True)`` runs) against it. Each probe is a real TCP
reading: the local clock before the connect, the 4-byte answer, the local
clock after it. Because the server's clock is ours plus a known offset, the
true offset is known, and the figure can show every interval containing it.

Writes the readings to ``docs/figures/precise_run.json`` and the plot to
``docs/_static/precise.png``. Run it from the repository root with the docs
extra installed::

    python docs/figures/precise_figure.py

(the committed PNG came from such a run; the docs build does not rerun it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

import trio_timehttp as tt  # noqa: E402
from trio_timehttp._probing import Reading, refine  # noqa: E402
from trio_timehttp._sample import OffsetEstimator  # noqa: E402


async def read_once(port: int) -> Reading:
    """One RFC 868 reading over TCP, timed with the local wall clock."""
    start = time.time()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        data = b""
        while len(data) < 4:
            chunk = await stream.receive_some(4 - len(data))
            if not chunk:
                break
            data += chunk
    end = time.time()
    return Reading(second=tt.decode_time(data), start=start, sent=start, end=end)


async def run(offset: float) -> list[Reading]:
    readings: list[Reading] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            lambda task_status: tt.serve_time_tcp(
                0, host="127.0.0.1", clock=lambda: time.time() + offset, task_status=task_status
            )
        )
        port = listeners[0].socket.getsockname()[1]
        await read_once(port)  # warm up: the first connection pays for imports
        with trio.fail_after(20):
            await refine(lambda: read_once(port), OffsetEstimator(), readings)
        nursery.cancel_scope.cancel()
    return readings


def intervals(readings: list[Reading]) -> list[dict[str, float]]:
    """Per probe: that reading's own interval, and the intersection so far."""
    estimator = OffsetEstimator()
    rows = []
    for r in readings:
        estimator.add(r.second, r.start, r.end)
        rows.append(
            {
                "second": r.second,
                "start": r.start,
                "end": r.end,
                "reading_lo": r.second - r.end,
                "reading_hi": r.second + 1 - r.start,
                "lo": estimator.lo,
                "hi": estimator.hi,
            }
        )
    return rows


def plot(rows: list[dict[str, float]], offset: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = range(1, len(rows) + 1)
    ms = [
        {k: (row[k] - offset) * 1000 for k in ("reading_lo", "reading_hi", "lo", "hi")}
        for row in rows
    ]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    bar = {"lw": 6, "solid_capstyle": "butt"}
    for i, row in zip(n, ms, strict=True):
        first = i == 1
        left.plot([i - 0.12] * 2, [row["reading_lo"], row["reading_hi"]], color="#9ab",
                  label="one reading" if first else None, **bar)  # fmt: skip
        left.plot([i + 0.12] * 2, [row["lo"], row["hi"]], color="#c43",
                  label="intersection so far" if first else None, **bar)  # fmt: skip
    left.axhline(0, color="black", lw=1, ls="--", label="true offset")
    left.set_xlabel("probe")
    left.set_ylabel("offset interval \N{MINUS SIGN} true offset (ms)")
    left.set_title("Each reading proves an interval; they intersect")
    left.set_xticks(list(n))
    left.legend(loc="upper right", fontsize=8)

    half = [(row["hi"] - row["lo"]) / 2 * 1000 for row in rows]
    right.semilogy(list(n), half, "o-", color="#c43")
    right.set_ylim(min(half) / 2, max(half) * 3)
    right.axhline(10, color="gray", lw=1, ls=":", label="stop below 10 ms")
    for i, h in zip(n, half, strict=True):
        right.annotate(f"{h:.1f}", (i, h), textcoords="offset points", xytext=(4, 6), fontsize=8)
    right.set_xlabel("probe")
    right.set_ylabel("uncertainty: half-width (ms, log)")
    right.set_title("The half-width about halves per probe")
    right.set_xticks(list(n))
    right.legend(loc="upper right", fontsize=8)
    fig.suptitle(
        f"Precise mode against a local RFC 868 server whose clock is {offset:+.4f} s ahead",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offset", type=float, default=2.3137, help="server clock ahead by (s)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "_static" / "precise.png")
    parser.add_argument("--data", type=Path, default=HERE / "precise_run.json")
    args = parser.parse_args()
    readings = trio.run(run, args.offset)
    rows = intervals(readings)
    for row in rows:  # the figure's claim, checked on the data it plots
        assert row["lo"] <= args.offset <= row["hi"], row
    args.data.write_text(json.dumps({"offset": args.offset, "probes": rows}, indent=1) + "\n")
    plot(rows, args.offset, args.out)
    last = rows[-1]
    print(
        f"{len(rows)} probes; final interval {last['lo'] - args.offset:+.4f} .. "
        f"{last['hi'] - args.offset:+.4f} s around the true offset; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
