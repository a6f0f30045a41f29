"""``trio-timehttp serve`` as a service: readiness, privilege drop, access control, workers, logs.

Every server here is a real subprocess on loopback. Readiness is what
systemd would see: the test binds a Unix datagram socket, passes it as
``NOTIFY_SOCKET`` and waits for ``READY=1`` -- no polling, no sleeps; after
it the server must already answer. Identities are read from
``/proc/PID/status``, the kernel's own account of the process.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from trio_timehttp import decode_time

from helpers import bound_trio_socket
from peerutil import unused_port

CLI = [sys.executable, "-m", "trio_timehttp"]


class Notifications:
    """A Unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, tmp_path: Path | None = None) -> None:
        address: str | bytes
        if tmp_path is None:
            self.value = f"@trio-timehttp-test-{uuid.uuid4().hex}"
            address = b"\0" + self.value[1:].encode()
        else:
            self.value = str(tmp_path / "notify")
            address = self.value
        self.sock = bound_trio_socket(socket.AF_UNIX, socket.SOCK_DGRAM, address)

    async def next(self, timeout: float = 30) -> str:
        with trio.fail_after(timeout):
            return (await self.sock.recv(4096)).decode()


class Service:
    """A running ``serve`` subprocess, its stderr collected as it comes."""

    def __init__(self, proc: trio.Process, notes: Notifications) -> None:
        self.proc = proc
        self.notes = notes
        self.log = ""
        self._changed = trio.Event()
        self.eof = trio.Event()

    async def collect(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.receive_some(65536):
            self.log += chunk.decode()
            self._changed.set()
            self._changed = trio.Event()
        self.eof.set()
        self._changed.set()

    async def changed(self) -> None:
        """Until more of the log arrives (or it ends)."""
        if self.eof.is_set():
            raise AssertionError(f"the log ended:\n{self.log}")
        await self._changed.wait()

    async def wait_for_log(self, text: str, timeout: float = 30) -> None:
        with trio.fail_after(timeout):
            while text not in self.log:
                if self.eof.is_set():
                    raise AssertionError(f"{text!r} never logged:\n{self.log}")
                await self._changed.wait()

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        with trio.fail_after(30):
            code = await self.proc.wait()
            await self.eof.wait()
        return code


@asynccontextmanager
async def service(*args: str, verbose: int = 0, group: bool = False) -> AsyncIterator[Service]:
    """Start ``serve ARGS`` with a notify socket; wait for READY=1; always stop it.

    ``group``: in a process group of its own (as a shell's job is), to signal it whole.
    """
    notes = Notifications()
    env = {**os.environ, "NOTIFY_SOCKET": notes.value}
    proc = await trio.lowlevel.open_process(
        [*CLI, *["-v"] * verbose, "serve", *args], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, process_group=0 if group else None,
    )  # fmt: skip
    svc = Service(proc, notes)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(svc.collect)
            with trio.fail_after(30):
                ready = await notes.next()
            assert ready.startswith("READY=1"), (ready, svc.log)
            yield svc
            if proc.returncode is None:
                await svc.stop()
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
        assert proc.stderr is not None
        await proc.stderr.aclose()
        notes.sock.close()


async def tcp_read(port: int, host: str = "127.0.0.1", source: str | None = None) -> bytes:
    with trio.socket.socket() as sock:
        if source is not None:
            await sock.bind((source, 0))
        await sock.connect((host, port))
        data = b""
        with trio.fail_after(10):
            while chunk := await sock.recv(100):
                data += chunk
        return data


def free_port_pair(low: bool = False) -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (below 1024 with ``low``)."""
    candidates = range(1000, 600, -1) if low else [unused_port() for _ in range(20)]
    for port in candidates:
        try:
            with socket.socket() as t, socket.socket(type=socket.SOCK_DGRAM) as u:
                t.bind(("127.0.0.1", port))
                u.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    pytest.skip("no free port")


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


async def exited(pid: int) -> None:
    """Until process ``pid`` (not our child) has exited: its pidfd becomes readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone and reaped already
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing identity needs root")


# --------------------------------------------------------------------------- readiness


async def test_ready_after_serving_and_stopping_on_sigterm() -> None:
    port = free_port_pair()
    async with service("--host", "127.0.0.1", "--port", str(port)) as svc:
        # READY=1 means serving: the first connection needs no retry.
        assert len(await tcp_read(port)) == 4
        assert await svc.stop() == 0
        assert await svc.notes.next() == "STOPPING=1"
    assert "received SIGTERM, stopping" in svc.log
    assert "Traceback" not in svc.log


async def test_ready_status_names_the_addresses(tmp_path: Path) -> None:
    # A path NOTIFY_SOCKET this time (the fixture above uses an abstract one).
    notes = Notifications(tmp_path)
    port = free_port_pair()
    env = {**os.environ, "NOTIFY_SOCKET": notes.value}
    async with trio.open_nursery() as nursery:
        proc = await trio.lowlevel.open_process(
            [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            ready = await notes.next()
            assert ready == f"READY=1\nSTATUS=serving tcp 127.0.0.1:{port}; udp 127.0.0.1:{port}"
            proc.send_signal(signal.SIGINT)
            assert await notes.next() == "STOPPING=1"
            with trio.fail_after(30):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        nursery.cancel_scope.cancel()
    notes.sock.close()


# --------------------------------------------------------------------------- privileges


@needs_root
async def test_user_drops_root_after_binding_a_low_port() -> None:
    # Port < 1024 needs root to bind; after READY the process must be
    # nobody:nogroup with no supplementary groups, and still serving.
    port = free_port_pair(low=True)
    nobody = pwd.getpwnam("nobody")
    async with service("--host", "127.0.0.1", "--port", str(port), "--user", "nobody") as svc:
        status = proc_status(svc.proc.pid)
        assert status["Uid"].split() == [str(nobody.pw_uid)] * 4
        assert status["Gid"].split() == [str(nobody.pw_gid)] * 4
        assert status["Groups"] == ""
        assert int(status["CapEff"], 16) == 0
        assert len(await tcp_read(port)) == 4
        assert "dropped privileges: now user nobody" in svc.log
        assert "no supplementary groups" in svc.log


@needs_root
async def test_group_is_honoured() -> None:
    port = free_port_pair()
    async with service("--host", "127.0.0.1", "--port", str(port), "--user", "nobody",
                       "--group", "daemon") as svc:  # fmt: skip
        status = proc_status(svc.proc.pid)
        assert status["Gid"].split() == ["1"] * 4
        assert status["Groups"] == ""


@needs_root
async def test_root_that_cannot_drop_refuses_to_run() -> None:
    # Root without CAP_SETUID/CAP_SETGID (removed from the bounding set
    # before exec): the drop fails, and the server must exit, not serve as root.
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux)")
    port = free_port_pair()
    command = [setpriv, "--bounding-set", "-setuid,-setgid", *CLI, "serve", "--host",
               "127.0.0.1", "--port", str(port), "--user", "nobody"]  # fmt: skip
    with trio.fail_after(60):
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                        check=False)  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode == 2
    assert "refusing to run: cannot switch to user nobody" in err
    assert "Operation not permitted" in err
    assert "listening on" not in err  # nothing was served
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "no-such-user-x"], "no such user: 'no-such-user-x'"),
        (["--user", "nobody", "--group", "no-such-group-x"], "no such group"),
        (["--group", "daemon"], "--group needs --user"),
        (["--allow", "10.0.0.0/33"], "--allow: '10.0.0.0/33' is not an IP network"),
    ],
)
async def test_bad_service_arguments_are_one_line(args: list[str], message: str) -> None:
    with trio.fail_after(60):
        result = await trio.run_process(
            [*CLI, "serve", "--port", "0", *args], capture_stderr=True, check=False
        )
    err = result.stderr.decode()
    assert result.returncode == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err


# --------------------------------------------------------------------------- access control


async def test_allow_denies_other_sources_and_the_summary_counts_them() -> None:
    port = free_port_pair()
    async with service("--host", "127.0.0.1", "--port", str(port), "--allow", "127.0.0.1/32",
                       "--stats-interval", "0.2") as svc:  # fmt: skip
        assert await tcp_read(port, source="127.0.0.2") == b""  # closed, unanswered
        assert len(await tcp_read(port)) == 4
        with (
            trio.socket.socket(type=socket.SOCK_DGRAM) as other,
            trio.socket.socket(type=socket.SOCK_DGRAM) as allowed,
        ):
            await other.bind(("127.0.0.2", 0))
            await allowed.bind(("127.0.0.1", 0))
            await other.sendto(b"", ("127.0.0.1", port))
            await allowed.sendto(b"", ("127.0.0.1", port))
            with trio.fail_after(10):
                assert len(await allowed.recv(100)) == 4
        await svc.wait_for_log("denied udp datagram from 127.0.0.2:")
        # The summaries count it all (over one or several intervals: sum them).
        with trio.move_on_after(30):
            while summed(svc.log) != {"tcp": 1, "udp": 1, "rate-limited": 0, "denied": 2,
                                      "ignored": 0, "errors": 0}:  # fmt: skip
                await svc.changed()
        expected = {"tcp": 1, "udp": 1, "rate-limited": 0, "denied": 2, "ignored": 0, "errors": 0}
        assert summed(svc.log) == expected, svc.log
    assert "answers only 127.0.0.1/32" in svc.log
    assert "denied tcp connection from 127.0.0.2:" in svc.log


SUMMARY = re.compile(
    r"last 0\.2 s: answered tcp (\d+), udp (\d+); rate-limited (\d+), denied (\d+), "
    r"ignored (\d+), errors (\d+); \d+ connection\(s\) open"
)


def summed(log: str) -> dict[str, int]:
    """The counts of every INFO summary line in ``log``, added up."""
    keys = ("tcp", "udp", "rate-limited", "denied", "ignored", "errors")
    totals = dict.fromkeys(keys, 0)
    for match in SUMMARY.finditer(log):
        for key, value in zip(keys, match.groups(), strict=True):
            totals[key] += int(value)
    return totals


async def test_per_answer_lines_only_at_debug() -> None:
    port = free_port_pair()
    async with service("--host", "127.0.0.1", "--port", str(port)) as svc:
        assert len(await tcp_read(port)) == 4
    assert "connection from" not in svc.log
    async with service("--host", "127.0.0.1", "--port", str(port), verbose=2) as svc:
        assert len(await tcp_read(port)) == 4
        await svc.wait_for_log("tcp connection from 127.0.0.1:")


# --------------------------------------------------------------------------- logs


@pytest.mark.parametrize("journal", [True, False])
async def test_no_timestamps_on_the_journal_stream(journal: bool) -> None:
    r, w = os.pipe()
    stat = os.fstat(w)
    env = {**os.environ}
    if journal:
        env["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
    port = free_port_pair()
    try:
        proc = await trio.lowlevel.open_process(
            [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stderr=w
        )
    finally:
        os.close(w)
    try:
        with os.fdopen(r, "rb") as stream:
            first = await trio.to_thread.run_sync(stream.readline)
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    line = first.decode()
    assert "time service listening on tcp 127.0.0.1:" in line
    assert line.startswith("trio_timehttp.server INFO") is journal
    assert bool(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line)) is not journal


# --------------------------------------------------------------------------- workers


async def test_a_second_supervisor_on_the_port_fails_like_a_single_server() -> None:
    port = free_port_pair()
    async with service("--host", "127.0.0.1", "--port", str(port), "--workers", "2") as svc:
        for extra in (["--workers", "2"], []):
            with trio.fail_after(60):
                result = await trio.run_process(
                    [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port), *extra],
                    capture_stderr=True, check=False,
                )  # fmt: skip
            err = result.stderr.decode()
            assert result.returncode == 1, err  # a runtime failure, not a usage mistake
            assert f"cannot bind port {port}: address already in use" in err
        assert len(await tcp_read(port)) == 4  # the first one is unharmed
        assert await svc.stop() == 0


async def test_workers_die_with_a_killed_supervisor_and_name_their_pid() -> None:
    port = free_port_pair()
    async with service("--host", "127.0.0.1", "--port", str(port), "--workers", "2") as svc:
        await svc.wait_for_log("started 2 workers")  # READY=1 may overtake the log pipe
        match = re.search(r"started 2 workers \(pids (\d+), (\d+)\)", svc.log)
        assert match is not None, svc.log
        workers = [int(pid) for pid in match.groups()]
        assert all(proc_status(pid)["PPid"] == str(svc.proc.pid) for pid in workers)
        assert len(await tcp_read(port)) == 4
        svc.proc.kill()  # SIGKILL: the supervisor gets no chance to clean up
        with trio.fail_after(10):
            await svc.proc.wait()
            for pid in workers:
                await exited(pid)
            await svc.eof.wait()  # every holder of the stderr pipe is gone
    # The supervisor's own pid, not init's (the workers' parent once it is gone).
    assert f"supervisor (pid {svc.proc.pid}) is gone; stopping" in svc.log, svc.log
    # Every line names its process; the workers' lines their own PIDs.
    lines = [line for line in svc.log.splitlines() if line]
    pids = set()
    for line in lines:
        found = re.search(r"trio_timehttp\.\w+\[(\d+)\] [A-Z]+ ", line)
        assert found is not None, line
        pids.add(int(found.group(1)))
    assert pids == {svc.proc.pid, *workers}
    # The port is free: nothing is left serving it.
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


async def test_workers_answer_udp_and_tcp() -> None:
    port = free_port_pair()
    async with service("--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                       "--udp-rate", "0") as svc:  # fmt: skip
        for _ in range(4):
            assert len(await tcp_read(port)) == 4
        with trio.socket.socket(type=socket.SOCK_DGRAM) as client:
            await client.connect(("127.0.0.1", port))
            await client.send(b"")
            with trio.fail_after(10):
                data = await client.recv(100)
            assert abs(decode_time(data) - time.time()) < 5
        assert await svc.stop() == 0
    assert svc.log.count("INFO stopped") == 2


async def started_workers(svc: Service) -> list[int]:
    await svc.wait_for_log("started 2 workers")  # READY=1 may overtake the log pipe
    match = re.search(r"started 2 workers \(pids (\d+), (\d+)\)", svc.log)
    assert match is not None, svc.log
    return [int(pid) for pid in match.groups()]


def lines_of(log: str, pid: int) -> list[str]:
    return [line for line in log.splitlines() if f"[{pid}] " in line]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_to_the_whole_group_stops_each_worker_once(signum: int) -> None:
    # Ctrl-C in a terminal is SIGINT to the foreground process group;
    # systemd's stop is SIGTERM to every process of the unit. Either way the
    # supervisor sends each worker its own SIGTERM on top: each worker stops
    # once, with its totals line, and nothing says "terminated".
    port = free_port_pair()
    async with service("--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                       group=True) as svc:  # fmt: skip
        workers = await started_workers(svc)
        assert len(await tcp_read(port)) == 4
        os.killpg(svc.proc.pid, signum)
        with trio.fail_after(30):
            assert await svc.proc.wait() == 0
            await svc.eof.wait()
    name = signal.Signals(signum).name
    assert f"[{svc.proc.pid}] INFO received {name}, stopping the workers" in svc.log
    for pid in workers:
        mine = lines_of(svc.log, pid)
        assert sum("INFO received SIGTERM, stopping" in line for line in mine) == 1, svc.log
        assert sum("INFO stopped; in all answered" in line for line in mine) == 1, svc.log
        assert not any("SIGINT" in line for line in mine), svc.log
    assert "terminated" not in svc.log
    assert "interrupted" not in svc.log
    assert svc.log.count("stopped; in all answered tcp 1") == 1  # the one answer, counted once


async def test_a_killed_worker_stops_the_others_and_the_status_names_its_signal() -> None:
    port = free_port_pair()
    async with service("--host", "127.0.0.1", "--port", str(port), "--workers", "2") as svc:
        victim, other = await started_workers(svc)
        os.kill(victim, signal.SIGKILL)
        with trio.fail_after(30):
            code = await svc.proc.wait()
            await svc.eof.wait()
    assert code == 128 + signal.SIGKILL, svc.log  # as a shell reports it, not -9 & 0xff
    assert f"ERROR worker {victim} was killed by SIGKILL; stopping the others" in svc.log
    assert sum("INFO stopped; in all" in line for line in lines_of(svc.log, other)) == 1
    assert "terminated" not in svc.log


# --------------------------------------------------------------------------- metrics


async def scrape(port: int) -> dict[str, float]:
    """GET /metrics with our own client; the samples by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    from trio_timehttp import BytesConsumer, fetch

    consumer = BytesConsumer()
    response = await fetch(f"http://127.0.0.1:{port}/metrics", consumer, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(bytes(consumer.body).decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def test_metrics_port_exposes_the_counters() -> None:
    pytest.importorskip("prometheus_client")
    port, metrics = free_port_pair(), free_port_pair()
    async with service("--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics),
                       "--allow", "127.0.0.0/30", "--udp-burst", "1"):  # fmt: skip
        # READY=1 covers the metrics port too: the first scrape needs no retry.
        before = await scrape(metrics)
        assert before["timehttp_answers_total{protocol=tcp}"] == 0
        assert len(await tcp_read(port)) == 4
        assert await tcp_read(port, source="127.0.0.4") == b""
        with (
            trio.socket.socket(type=socket.SOCK_DGRAM) as client,
            trio.socket.socket(type=socket.SOCK_DGRAM) as marker,
        ):
            await client.connect(("127.0.0.1", port))
            await marker.bind(("127.0.0.2", 0))  # its own rate-limit bucket
            await client.send(b"")
            await client.send(b"")  # over the burst of 1: rate-limited
            await marker.sendto(b"", ("127.0.0.1", port))
            with trio.fail_after(10):
                assert len(await client.recv(100)) == 4
                # Read in order from one queue: the marker's answer proves the
                # rate-limited datagram was handled before it.
                assert len(await marker.recv(100)) == 4
        after = await scrape(metrics)
    assert after["timehttp_answers_total{protocol=tcp}"] == 1
    assert after["timehttp_answers_total{protocol=udp}"] == 2
    assert after["timehttp_rate_limited_total{}"] == 1
    assert after["timehttp_denied_total{}"] == 1
    assert after["timehttp_accept_errors_total{}"] == 0
    assert after["timehttp_active_connections{}"] == 0


def low_tcp_port(exclude: int) -> int:
    """A TCP port below 1024 free on 127.0.0.1, other than ``exclude``."""
    for port in range(990, 600, -1):
        if port == exclude:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    pytest.skip("no free low port")


@needs_root
async def test_user_with_a_privileged_metrics_port_imports_nothing_after_the_drop() -> None:
    # The interpreter's files may be unreadable to --user (a Python under
    # /root): everything the serving path loads must be loaded before the
    # drop. Every path is exercised once as nobody -- TCP and UDP answers, a
    # denial, a rate limit, an ignored datagram, scrapes good and bad, a
    # summary, the stop -- and the server's own account (at DEBUG) must be
    # that it imported nothing after dropping. The metrics port is below
    # 1024: it is bound before the drop, like the time port.
    pytest.importorskip("prometheus_client")
    port = free_port_pair(low=True)
    metrics = low_tcp_port(exclude=port)
    nobody = str(pwd.getpwnam("nobody").pw_uid)
    args = ["--host", "127.0.0.1", "--port", str(port), "--user", "nobody",
            "--metrics-port", str(metrics), "--allow", "127.0.0.0/30", "--udp-burst", "1",
            "--stats-interval", "1"]  # fmt: skip
    async with service(*args, verbose=2) as svc:
        assert proc_status(svc.proc.pid)["Uid"].split() == [nobody] * 4
        assert (await scrape(metrics))["timehttp_answers_total{protocol=tcp}"] == 0
        for _ in range(3):
            assert len(await tcp_read(port)) == 4
        assert await tcp_read(port, source="127.0.0.4") == b""
        with trio.socket.socket(type=socket.SOCK_DGRAM) as client:
            await client.connect(("127.0.0.1", port))
            for payload in (b"", b"", b"12345678"):  # answered, rate-limited, ignored
                await client.send(payload)
            with trio.fail_after(10):
                assert len(await client.recv(100)) == 4
        with trio.socket.socket() as bad:  # a malformed request: 400
            await bad.connect(("127.0.0.1", metrics))
            await bad.send(b"garbage\r\n\r\n")
            with trio.fail_after(10):
                assert (await bad.recv(100)).startswith(b"HTTP/1.1 400 ")
        await svc.wait_for_log("last 1 s: answered tcp 3")
        samples = await scrape(metrics)
        assert samples["timehttp_answers_total{protocol=tcp}"] == 3
        assert samples["timehttp_answers_total{protocol=udp}"] == 1
        assert await svc.stop(signal.SIGINT) == 0
    assert "imported after the privilege drop: nothing" in svc.log, svc.log
    assert "internal error" not in svc.log


def test_late_imports_names_what_was_imported_since() -> None:
    from trio_timehttp._privileges import LateImports

    sys.modules.pop("this_module_is_not_real_yet", None)
    late = LateImports()
    assert late.names() == []
    sys.modules["this_module_is_not_real_yet"] = sys  # what an import leaves behind
    try:
        assert late.names() == ["this_module_is_not_real_yet"]
    finally:
        del sys.modules["this_module_is_not_real_yet"]


async def scrape_until(port: int, *, tcp: int, udp: int) -> dict[str, float]:
    """Scrape until the page counts ``tcp`` and ``udp`` answers (workers report every second)."""
    for _ in range(100):  # a bounded retry: 20 s at most
        samples = await scrape(port)
        if (samples["timehttp_answers_total{protocol=tcp}"] >= tcp
                and samples["timehttp_answers_total{protocol=udp}"] >= udp):  # fmt: skip
            return samples
        await trio.sleep(0.2)
    raise AssertionError(f"never counted tcp {tcp}, udp {udp}: {samples}")


async def test_workers_metrics_page_sums_every_workers_counts() -> None:
    # The supervisor serves /metrics: the sum of what each worker reports
    # every second over its lifeline. The kernel spreads the clients over
    # the workers; the page must count every answer once, whoever gave it.
    pytest.importorskip("prometheus_client")
    port, metrics = free_port_pair(), free_port_pair()
    async with service("--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                       "--metrics-port", str(metrics), "--udp-rate", "0") as svc:  # fmt: skip
        workers = await started_workers(svc)
        assert (await scrape(metrics))["timehttp_answers_total{protocol=tcp}"] == 0
        for _ in range(8):
            assert len(await tcp_read(port)) == 4
        with trio.socket.socket(type=socket.SOCK_DGRAM) as client:
            await client.connect(("127.0.0.1", port))
            for _ in range(3):
                await client.send(b"")
                with trio.fail_after(10):
                    assert len(await client.recv(100)) == 4
        samples = await scrape_until(metrics, tcp=8, udp=3)
        assert samples["timehttp_answers_total{protocol=tcp}"] == 8
        assert samples["timehttp_answers_total{protocol=udp}"] == 3
        assert samples["timehttp_active_connections{}"] == 0
        assert await svc.stop() == 0
    # The workers' own totals add up to the page.
    totals = [re.search(r"stopped; in all answered tcp (\d+), udp (\d+)",
                        "\n".join(lines_of(svc.log, pid))) for pid in workers]  # fmt: skip
    assert all(totals), svc.log
    assert sum(int(m.group(1)) for m in totals if m) == 8
    assert sum(int(m.group(2)) for m in totals if m) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--port", "8037", "--metrics-port", "9100", "--metrics-host", "999.0.0.1"],
            "cannot listen for metrics on 999.0.0.1:9100: no such address",
        ),
        (
            [
                "--workers",
                "2",
                "--port",
                "8037",
                "--metrics-port",
                "9100",
                "--metrics-host",
                "999.0.0.1",
            ],
            "cannot listen for metrics on 999.0.0.1:9100: no such address",
        ),
    ],
)
async def test_metrics_bind_failures(args: list[str], message: str) -> None:
    # An address that cannot be bound is a runtime failure (exit 1), not a usage mistake.
    with trio.fail_after(60):
        result = await trio.run_process([*CLI, "serve", *args], capture_stderr=True, check=False)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert message in err
    assert "--help" not in err


async def test_metrics_port_in_use_is_one_line() -> None:
    pytest.importorskip("prometheus_client")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics = taken.getsockname()[1]
        port = free_port_pair()
        with trio.fail_after(60):
            result = await trio.run_process(
                [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--metrics-port", str(metrics)],
                capture_stderr=True, check=False,
            )  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert f"cannot listen for metrics on 127.0.0.1:{metrics}: address already in use" in err
    assert "Traceback" not in err
