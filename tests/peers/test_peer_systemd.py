"""systemd's own tools against the service: socket activation, and the shipped unit files.

``systemd-socket-activate`` (Debian's ``systemd`` package; no PID 1 systemd
needed) binds the sockets and execs ``trio-timehttp serve`` with them as fds
3.. and LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES set -- what systemd does for
``trio-timehttp.socket``. One invocation binds one kind of socket, so two are
chained: the outer binds TCP and, on the first connection, execs the inner,
which adds the UDP socket (passing the TCP one through) and execs serve. The
first client is openrdate itself: its connection is what starts the
service, and it must still get its answer. ``rdate -p`` only prints (SAFETY:
never without ``-p``); it has no timeout, so it runs under ``timeout 10``.

``systemd-analyze verify`` and ``security --offline`` check the units in
contrib/systemd as shipped (only ExecStart= is pointed at this checkout).
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

import peerutil

pytestmark = pytest.mark.peer

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "contrib" / "systemd"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_cli_serve import (  # noqa: E402
    Notifications,
    Service,
    free_port_pair,
    low_tcp_port,
    proc_status,
    scrape,
)


async def rdate(port: int, *, udp: bool = False) -> str:
    path = peerutil.require_program("rdate")
    with trio.fail_after(20):
        result = await trio.run_process(
            ["timeout", "10", path, "-p", *(["-u"] if udp else []), "-o", str(port), "127.0.0.1"],
            capture_stdout=True, capture_stderr=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
    return result.stdout.decode()


def this_year_printed(out: str) -> bool:
    return time.strftime("%Y", time.gmtime()) in out and "UTC" in out


def activate_command(port: int, *serve_args: str, verbose: int = 0) -> list[str]:
    activate = peerutil.require_program("systemd-socket-activate")
    passed = ["-E", "PYTHONPATH", "-E", "NOTIFY_SOCKET"]
    return [
        activate, "-l", f"127.0.0.1:{port}", *passed, "--",
        activate, "-d", "-l", f"127.0.0.1:{port}", "--fdname=time-stream:time-dgram", *passed,
        "--", sys.executable, "-m", "trio_timehttp", *["-v"] * verbose, "serve", *serve_args,
    ]  # fmt: skip


async def run_activated(port: int, *serve_args: str, verbose: int = 0) -> Service:
    notes = Notifications()
    env = {**os.environ, "NOTIFY_SOCKET": notes.value}
    proc = await trio.lowlevel.open_process(
        activate_command(port, *serve_args, verbose=verbose), env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    return Service(proc, notes)


async def stop(proc: trio.Process) -> int:
    # systemd-socket-activate exec'd into serve: the same PID.
    proc.send_signal(signal.SIGTERM)
    with trio.fail_after(30):
        return await proc.wait()


async def test_socket_activated_serve_answers_rdate_over_tcp_and_udp() -> None:
    port = free_port_pair()
    svc = await run_activated(port, "--stats-interval", "0")
    proc, notes = svc.proc, svc.notes
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(svc.collect)
            # systemd-socket-activate's own readiness line; then rdate's
            # connection is what starts the service.
            await svc.wait_for_log(f"Listening on 127.0.0.1:{port} as 3.")
            assert this_year_printed(await rdate(port))
            assert (await notes.next()).startswith(
                f"READY=1\nSTATUS=serving tcp 127.0.0.1:{port}; udp 127.0.0.1:{port}"
            )
            assert this_year_printed(await rdate(port, udp=True))
            assert this_year_printed(await rdate(port))
            assert await stop(proc) == 0
            assert await notes.next() == "STOPPING=1"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        notes.sock.close()
    text = svc.log
    # The inherited sockets, told apart by type and named by LISTEN_FDNAMES; nothing bound.
    assert f"socket activation: fd 3 (time-stream) is tcp 127.0.0.1:{port}" in text
    assert f"socket activation: fd 4 (time-dgram) is udp 127.0.0.1:{port}" in text
    assert "Traceback" not in text


async def test_accept_yes_activation_is_refused_in_words() -> None:
    # systemd-socket-activate --accept (systemd's Accept=yes) hands serve one
    # connected socket per connection: a clear refusal, not "Invalid argument".
    activate = peerutil.require_program("systemd-socket-activate")
    port = free_port_pair()
    command = [
        activate, "--accept", "-l", f"127.0.0.1:{port}", "-E", "PYTHONPATH", "--",
        sys.executable, "-m", "trio_timehttp", "serve",
    ]  # fmt: skip
    proc = await trio.lowlevel.open_process(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    svc = Service(proc, Notifications())
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(svc.collect)
            await svc.wait_for_log(f"Listening on 127.0.0.1:{port} as 3.")
            with trio.fail_after(20):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                async with stream:
                    assert await stream.receive_some(16) == b""  # closed unanswered
            await svc.wait_for_log("not a listening socket")
            nursery.cancel_scope.cancel()
    finally:
        proc.kill()
        await proc.wait()
        svc.notes.sock.close()
    text = svc.log
    assert "is one TCP connection (systemd's Accept=yes" in text
    assert "use Accept=no" in text
    assert "Invalid argument" not in text
    assert "Traceback" not in text


@pytest.mark.skipif(os.geteuid() != 0, reason="binding a low port and dropping need root")
async def test_socket_activated_low_port_then_user_and_workers() -> None:
    # systemd (here: systemd-socket-activate, as root) binds the low port; the
    # service drops to nobody and hands the inherited sockets to two workers.
    port = free_port_pair(low=True)
    svc = await run_activated(port, "--user", "nobody", "--workers", "2")
    proc, notes = svc.proc, svc.notes
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(svc.collect)
            await svc.wait_for_log(f"Listening on 127.0.0.1:{port} as 3.")
            assert this_year_printed(await rdate(port))
            ready = await notes.next()
            assert ready.startswith("READY=1\nSTATUS=serving tcp")
            assert "with 2 workers" in ready
            nobody = str(pwd.getpwnam("nobody").pw_uid)
            await svc.wait_for_log("started 2 workers")
            match = re.search(r"started 2 workers \(pids (\d+), (\d+)\)", svc.log)
            assert match is not None, svc.log
            for pid in (proc.pid, *map(int, match.groups())):  # supervisor and workers
                assert proc_status(pid)["Uid"].split() == [nobody] * 4
                assert proc_status(pid)["Groups"] == ""
            for _ in range(3):
                assert this_year_printed(await rdate(port, udp=True))
            assert await stop(proc) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        notes.sock.close()
    text = svc.log
    pids = {int(p) for p in re.findall(r"trio_timehttp\.\w+\[(\d+)\]", text)}
    assert len(pids) == 3  # the supervisor and its two workers, each on its own lines
    assert text.count("INFO stopped") == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to nobody needs root")
async def test_socket_activated_user_and_metrics_keep_serving() -> None:
    # The red team's case: activated by the first client, dropped to nobody
    # (whose view of a Python under /root is "permission denied"), with
    # --metrics-port. It must scrape as nobody and answer the clients after
    # the first -- not die on a codec or module loaded lazily after the drop.
    pytest.importorskip("prometheus_client")
    port = free_port_pair(low=True)
    metrics = low_tcp_port(exclude=port)  # privileged too: bound before the drop
    svc = await run_activated(port, "--user", "nobody", "--metrics-port", str(metrics),
                              "--stats-interval", "0", verbose=2)  # fmt: skip
    proc, notes = svc.proc, svc.notes
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(svc.collect)
            await svc.wait_for_log(f"Listening on 127.0.0.1:{port} as 3.")
            assert this_year_printed(await rdate(port))
            assert (await notes.next()).startswith("READY=1")
            nobody = str(pwd.getpwnam("nobody").pw_uid)
            assert proc_status(proc.pid)["Uid"].split() == [nobody] * 4
            assert (await scrape(metrics))["timehttp_answers_total{protocol=tcp}"] == 1
            assert this_year_printed(await rdate(port))
            assert this_year_printed(await rdate(port, udp=True))
            assert this_year_printed(await rdate(port))
            samples = await scrape(metrics)
            assert samples["timehttp_answers_total{protocol=tcp}"] == 3
            assert samples["timehttp_answers_total{protocol=udp}"] == 1
            assert await stop(proc) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        notes.sock.close()
    assert "imported after the privilege drop: nothing" in svc.log, svc.log
    assert "internal error" not in svc.log


def shipped_units(tmp_path: Path) -> list[Path]:
    """The units as shipped, ExecStart= pointed at this checkout's interpreter."""
    out = []
    for unit in sorted(UNITS.iterdir()):
        text = unit.read_text()
        text = text.replace(
            "ExecStart=/usr/local/bin/trio-timehttp",
            f"ExecStart={sys.executable} -m trio_timehttp",
        )
        (tmp_path / unit.name).write_text(text)
        out.append(tmp_path / unit.name)
    return out


async def test_shipped_units_verify_cleanly(tmp_path: Path) -> None:
    analyze = peerutil.require_program("systemd-analyze")
    units = shipped_units(tmp_path)
    assert [u.name for u in units] == ["trio-timehttp.service", "trio-timehttp.socket"]
    assert "ExecStart=/usr/local/bin/trio-timehttp serve" in (UNITS / units[0].name).read_text()
    with trio.fail_after(60):
        result = await trio.run_process(
            [analyze, "verify", "--man=no", *map(str, units)],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    # verify exits 0 on unknown keys too: any line it prints is a finding.
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode().strip() == ""


async def test_shipped_service_is_hardened(tmp_path: Path) -> None:
    analyze = peerutil.require_program("systemd-analyze")
    service = shipped_units(tmp_path)[0]
    with trio.fail_after(60):
        result = await trio.run_process(
            [analyze, "security", "--offline=yes", "--threshold=15", str(service)],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    out = result.stdout.decode() + result.stderr.decode()
    assert result.returncode == 0, out  # exposure at most 1.5 of 10
    for setting in ("NoNewPrivileges=", "ProtectSystem=", "User=/DynamicUser=", "PrivateNetwork="):
        assert re.search(rf"✓ {re.escape(setting)}", out), setting
