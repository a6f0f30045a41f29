"""``monitor``: its state, its metrics page (read by prometheus_client's own parser), the
reading rounds against in-process servers, and the command as a subprocess.

Readiness: servers start through ``nursery.start``; the subprocess says on
stderr where it serves and when a round is complete (read line by line, with
a deadline), so no test sleeps.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from trio_timehttp import BytesConsumer, ConnectError, Timeout, TimeSample, fetch, serve_time
from trio_timehttp._metrics_server import serve_metrics
from trio_timehttp._monitor import MonitorConfig, monitor, read_round
from trio_timehttp._monitor_metrics import MetricsPage
from trio_timehttp._monitor_state import MonitorState

CLI = [sys.executable, "-m", "trio_timehttp"]


def sample(offset: float, uncertainty: float = 0.5, local: float = 1796156000.0) -> TimeSample:
    return TimeSample(host="h", port=37, protocol="udp", server_time=local + offset,
                      local_time=local, offset=offset, rtt=0.002,
                      uncertainty=uncertainty)  # fmt: skip


def parse(page: bytes) -> dict[str, list[Sample]]:
    """Every sample on the page by family name, through the real Prometheus parser."""
    families = {}
    for family in text_string_to_metric_families(page.decode()):
        families[family.name] = list(family.samples)
    return families


def value(samples: list[Sample], **labels: str) -> float:
    found = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (labels, samples)
    return found[0]


# -- state and page ----------------------------------------------------------------------------


def test_state_records_successes_and_errors_by_kind() -> None:
    state = MonitorState(["a:37", "b:37", "https://c/"])
    state.record(0, sample(0.1))
    state.record(1, Timeout("late"))
    state.record(1, Timeout("late"))
    state.record(1, ConnectError("refused"))
    state.record(2, sample(0.2, local=5.0))
    assert [s.protocol for s in state.sources] == ["tcp", "tcp", "https"]
    assert state.sources[1].errors == {"timeout": 2, "connect_error": 1}
    assert state.sources[1].readings == 3
    assert state.sources[2].last_success == 5.0
    # A failed reading removes the offset, keeps the time of the last success.
    state.record(2, Timeout("late"))
    assert state.sources[2].sample is None
    assert state.sources[2].last_success == 5.0


def test_state_rejects_a_source_given_twice() -> None:
    with pytest.raises(ValueError, match="more than once"):
        MonitorState(["a", "b", "a"])


def test_the_page_parses_and_shows_every_metric() -> None:
    state = MonitorState(["a:37", "b:37", "c:37", "d:37"], udp=True)
    results = [sample(0.01), sample(0.02), sample(100.0), ConnectError("refused")]
    for i, r in enumerate(results):
        state.record(i, r)
    state.finish_round(results)
    families = parse(MetricsPage(state).render())
    a = {"source": "a:37", "protocol": "udp"}
    assert value(families["timehttp_offset_seconds"], **a) == 0.01
    assert value(families["timehttp_uncertainty_seconds"], **a) == 0.5
    assert value(families["timehttp_rtt_seconds"], **a) == 0.002
    assert value(families["timehttp_last_success_timestamp_seconds"], **a) == 1796156000.0
    assert value(families["timehttp_readings"], source="d:37") == 1
    assert value(families["timehttp_errors"], source="d:37", kind="connect_error") == 1
    assert not [s for s in families["timehttp_offset_seconds"] if s.labels["source"] == "d:37"]
    assert value(families["timehttp_falseticker"], source="c:37") == 1
    assert value(families["timehttp_falseticker"], source="a:37") == 0
    assert value(families["timehttp_falsetickers"]) == 1
    assert value(families["timehttp_combined_offset_seconds"]) == pytest.approx(0.015)
    assert value(families["timehttp_combined_uncertainty_seconds"]) == pytest.approx(0.495)
    assert value(families["timehttp_rounds"]) == 1
    # Counters are exposed as *_total, with no _created series.
    names = {s.name for samples in families.values() for s in samples}
    assert "timehttp_readings_total" in names
    assert "timehttp_errors_total" in names
    assert not any(name.endswith("_created") for name in names)


def test_no_combined_offset_without_a_majority() -> None:
    state = MonitorState(["a", "b"])
    state.finish_round([sample(0.0), sample(100.0)])
    families = parse(MetricsPage(state).render())
    assert families["timehttp_combined_offset_seconds"] == []
    assert value(families["timehttp_falsetickers"]) == 0
    # Before any complete round: no combined values at all, and it still parses.
    families = parse(MetricsPage(MonitorState(["a"])).render())
    assert families["timehttp_falsetickers"] == []
    assert value(families["timehttp_rounds"]) == 0


def test_label_values_are_escaped() -> None:
    source = 'http://x/"quoted"\\path\nline'
    state = MonitorState([source])
    state.record(0, sample(0.5))
    families = parse(MetricsPage(state).render())
    assert value(families["timehttp_offset_seconds"], source=source) == 0.5


# -- rounds against in-process servers ---------------------------------------------------------


async def time_server(nursery: trio.Nursery, offset: float = 0.0) -> str:
    listeners, _ = await nursery.start(partial(
        serve_time, 0, host="127.0.0.1", udp=False, clock=lambda: time.time() + offset
    ))  # fmt: skip
    return f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"


def dead_source() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def test_a_round_reads_every_source_in_order(nursery: trio.Nursery) -> None:
    sources = (await time_server(nursery), dead_source(), await time_server(nursery, 100))
    state = MonitorState(sources)
    results = await read_round(MonitorConfig(sources, concurrency=2), state)
    assert isinstance(results[0], TimeSample)
    assert isinstance(results[1], ConnectError)
    assert isinstance(results[2], TimeSample)
    assert results[2].offset == pytest.approx(100, abs=1.5)
    assert [s.readings for s in state.sources] == [1, 1, 1]


class SilentListener:
    """Accepts connections and never answers; counts how many are open at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0
        self.accepted = trio.Event()

    async def handler(self, stream: trio.SocketStream) -> None:
        self.open += 1
        self.most = max(self.most, self.open)
        self.accepted.set()
        try:
            while await stream.receive_some(100):  # until the client hangs up
                pass
        finally:
            self.open -= 1
            await stream.aclose()


async def silent_source(
    nursery: trio.Nursery, silent: SilentListener, host: str = "127.0.0.1"
) -> str:
    listeners = await nursery.start(partial(trio.serve_tcp, silent.handler, 0, host=host))
    return f"{host}:{listeners[0].socket.getsockname()[1]}"


async def test_readings_at_once_never_exceed_the_concurrency(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    silent = SilentListener()
    sources = tuple([await silent_source(nursery, silent, f"127.0.0.{i}") for i in range(1, 11)])
    config = MonitorConfig(sources, timeout=5, concurrency=3)
    state = MonitorState(sources)
    began = trio.current_time()
    results = await read_round(config, state)
    assert all(isinstance(r, Timeout) for r in results)
    assert silent.most == 3
    # 10 readings, 3 at a time, 5 s each: four waves.
    assert 20 <= trio.current_time() - began < 21
    assert [s.errors for s in state.sources] == [{"timeout": 1}] * 10


async def test_a_scrape_never_waits_on_a_reading(nursery: trio.Nursery) -> None:
    silent = SilentListener()
    quiet = await silent_source(nursery, silent)
    fast = await time_server(nursery)
    sources = (fast, quiet)
    state = MonitorState(sources)
    config = MonitorConfig(sources, interval=60, timeout=60)
    listeners = await nursery.start(partial(monitor, config, state, MetricsPage(state)))
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(10):
        await silent.accepted.wait()  # the round is under way, stuck on the quiet source
    with trio.fail_after(2):
        consumer = BytesConsumer()
        await fetch(f"http://127.0.0.1:{port}/metrics", consumer, timeout=None)
    families = parse(consumer.body)
    # The page is the last complete round's: none yet, whatever the fast source did.
    assert value(families["timehttp_rounds"]) == 0
    assert families["timehttp_offset_seconds"] == []
    assert state.rounds == 0


class CountingPage(MetricsPage):
    def __init__(self, state: MonitorState) -> None:
        super().__init__(state)
        self.refreshed: list[int] = []
        self._state = state

    def refresh(self) -> None:
        super().refresh()
        self.refreshed.append(self._state.rounds)


async def test_rounds_repeat_every_interval_and_refresh_the_page(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    sources = (await time_server(nursery),)
    state = MonitorState(sources)
    page = CountingPage(state)
    with trio.move_on_after(35):
        await monitor(MonitorConfig(sources, interval=10), state, page)
    assert state.rounds == 4  # at 0, 10, 20 and 30 s
    assert state.sources[0].readings == 4
    assert page.refreshed == [1, 2, 3, 4]
    assert value(parse(page.render())["timehttp_readings"]) == 4


async def test_the_metrics_port_is_bound_before_any_reading(refused_port: int) -> None:
    source = f"127.0.0.1:{refused_port}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        state = MonitorState([source])
        config = MonitorConfig((source,), metrics_port=taken.getsockname()[1])
        with pytest.raises(OSError, match="in use"):
            await monitor(config, state, MetricsPage(state))
        assert state.sources[0].readings == 0


# -- the command -------------------------------------------------------------------------------


class Lines:
    """Lines of a stream, one at a time."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(65536)
            assert chunk, f"stream ended: {self._buffer!r}"
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


async def test_monitor_subprocess_scraped(nursery: trio.Nursery) -> None:
    right = [await time_server(nursery), await time_server(nursery)]
    far = await time_server(nursery, 100)
    dead = dead_source()
    proc = await trio.lowlevel.open_process(
        [*CLI, "-v", "monitor", *right, far, dead, "--interval", "0.2", "--metrics-port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    log = Lines(proc.stderr)
    try:
        with trio.fail_after(30):
            while "monitor: 4 sources every 0.2 s, metrics at " not in (line := await log.next()):
                pass
            url = line.rsplit(" ", 1)[1]
            while "round 2: 3 of 4 sources answered" not in await log.next():
                pass
            consumer = BytesConsumer()
            response = await fetch(url, consumer, timeout=10)
            assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
            proc.send_signal(15)
            assert await proc.wait() == 0
            rest = b""
            while chunk := await proc.stderr.receive_some(65536):
                rest += chunk
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.stderr.aclose()
    families = parse(consumer.body)
    for source in right:
        assert abs(value(families["timehttp_offset_seconds"], source=source)) < 1.5
        assert value(families["timehttp_falseticker"], source=source) == 0
    assert value(families["timehttp_offset_seconds"], source=far) == pytest.approx(100, abs=1.5)
    assert value(families["timehttp_falseticker"], source=far, protocol="tcp") == 1
    assert value(families["timehttp_errors"], source=dead, kind="connect_error") >= 2
    assert value(families["timehttp_readings"], source=dead) >= 2
    assert not [s for s in families["timehttp_offset_seconds"] if s.labels["source"] == dead]
    assert value(families["timehttp_falsetickers"]) == 1
    assert abs(value(families["timehttp_combined_offset_seconds"])) < 1.5
    assert value(families["timehttp_rounds"]) >= 2
    assert b"received SIGTERM, stopping" in rest
    assert b"Traceback" not in rest


async def run_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process([*CLI, *args], capture_stdout=True, capture_stderr=True,
                                      check=False, env=env)  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert result.returncode != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


async def test_monitor_without_prometheus_client_says_what_to_install(
    tmp_path: Path, refused_port: int
) -> None:
    blocker = tmp_path / "prometheus_client"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('not installed (test)')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    source = f"127.0.0.1:{refused_port}"
    result = await run_cli("monitor", source, "--metrics-port", "0", env=env)
    assert result.returncode == 1
    assert "pip install 'trio_timehttp[metrics]'" in one_line_error(result)


async def test_monitor_usage_errors() -> None:
    result = await run_cli("monitor", "a:1", "b:1", "a:1", "--metrics-port", "0")
    assert result.returncode == 2
    assert "more than once" in one_line_error(result)
    result = await run_cli("monitor", "a:1")
    assert result.returncode == 2
    assert "--metrics-port" in one_line_error(result)


async def test_monitor_metrics_port_in_use_is_one_line(refused_port: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = await run_cli("monitor", f"127.0.0.1:{refused_port}", "--metrics-port",
                               str(taken.getsockname()[1]))  # fmt: skip
    assert "address already in use" in one_line_error(result).lower()


async def test_serve_metrics_is_reexported_for_the_service() -> None:
    # ``serve --metrics-port`` builds on the same server: its signature is pinned.
    import inspect

    params = inspect.signature(serve_metrics).parameters
    assert list(params) == ["render", "port", "host", "timeout", "task_status"]
    assert params["host"].default == "127.0.0.1"
    assert params["timeout"].default == 10.0
