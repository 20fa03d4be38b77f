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
