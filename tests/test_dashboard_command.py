"""`tunelab dashboard`: argument checks are one-line user errors; the streamlit command line is right."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tunelab.dashboards.commands import APP_PATH, port_is_free, streamlit_command


def tunelab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tunelab.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_streamlit_command_serves_app_on_localhost_with_the_warehouse(tmp_path: Path) -> None:
    command = streamlit_command(tmp_path / "tunelab.duckdb", 8600)
    assert command[1:5] == ["-m", "streamlit", "run", str(APP_PATH)]
    assert APP_PATH.is_file()
    flags = dict(zip(command[5:-3:2], command[6:-3:2], strict=True))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8600"
    assert flags["--server.headless"] == "true"
    assert command[-3:] == ["--", "--warehouse", str(tmp_path / "tunelab.duckdb")]


def test_missing_warehouse_is_a_one_line_error(tmp_path: Path) -> None:
    result = tunelab("dashboard", "--workspace", str(tmp_path / "ws"), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "tunelab.duckdb: warehouse not found" in result.stderr and "tunelab demo" in result.stderr


def test_warehouse_file_option(tmp_path: Path) -> None:
    result = tunelab("dashboard", "--warehouse", str(tmp_path / "elsewhere.duckdb"), cwd=tmp_path)
    assert result.returncode == 2 and "elsewhere.duckdb: warehouse not found" in result.stderr
    both = tunelab("dashboard", "--workspace", "ws", "--warehouse", "x.duckdb", cwd=tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr


def test_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "tunelab.duckdb").write_bytes(b"")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_is_free(port)
        result = tunelab("dashboard", "--workspace", str(tmp_path / "ws"), "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    assert f"--port: {port}: already in use" in result.stderr and "Traceback" not in result.stderr


def test_dashboard_serves_the_warehouse_and_stops_with_its_server(tmp_path: Path) -> None:
    import signal
    import time
    import urllib.request

    from test_dashboard_queries import build_warehouse

    (tmp_path / "ws").mkdir()
    build_warehouse(tmp_path / "ws" / "tunelab.duckdb")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tunelab.cli",
            "dashboard",
            "--workspace",
            str(tmp_path / "ws"),
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    assert response.read() == b"ok"
                    break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "the dashboard never answered /_stcore/health"
                time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read().decode()
    assert f"http://127.0.0.1:{port}" in output
    deadline = time.monotonic() + 10
    while accepts_connections(port):  # Streamlit went down with the command, not orphaned
        assert time.monotonic() < deadline, "streamlit still serves after tunelab dashboard stopped"
        time.sleep(0.2)
    assert port_is_free(port)  # so it can be started again on the same port right away


def accepts_connections(port: int) -> bool:
    # not a bind() probe: the health check's closed connection may sit in TIME_WAIT for a minute
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
