"""`tunelab dashboard`: Streamlit over the workspace's warehouse, bound to 127.0.0.1, read-only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from tunelab.cliopts import WarehouseOption, WorkspaceOption
from tunelab.errors import UserError
from tunelab.workspace import as_workspace

APP_PATH = Path(__file__).resolve().parent / "app.py"
WAREHOUSE_ENV = "TUNELAB_WAREHOUSE"


def streamlit_command(warehouse: Path, port: int, address: str = "127.0.0.1") -> list[str]:
    """The `streamlit run` command line that serves the dashboard over `warehouse`."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.headless",
        "true",
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        # The dashboard reads and rates; it never takes files from the browser.
        "--server.maxUploadSize",
        "1",
        "--",
        "--warehouse",
        str(warehouse),
    ]


def port_is_free(port: int, address: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the server will: a just-stopped dashboard's TIME_WAIT connections must not count as "in use"
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def resolve_warehouse(workspace: Path | None, warehouse: Path | None = None) -> Path:
    """--warehouse FILE wins; else the workspace's warehouse (default ./tunelab-workspace)."""
    if warehouse is not None and workspace is not None:
        raise UserError("dashboard: give --workspace DIR or --warehouse FILE, not both")
    db = warehouse if warehouse is not None else as_workspace(workspace).warehouse
    if not db.is_file():
        raise UserError(
            f"{db}: warehouse not found; run `tunelab demo` or `tunelab curate RECIPE` first, "
            "or pass --workspace DIR"
        )
    return db


def dashboard_command(
    workspace: WorkspaceOption = None,
    port: Annotated[int, typer.Option("--port", help="port on 127.0.0.1")] = 8501,
    warehouse: WarehouseOption = None,
) -> None:
    """Open the audit / runs / predictions / SQL dashboard over the warehouse (read-only, 127.0.0.1)."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port: {port}: must be between 1 and 65535")
    db = resolve_warehouse(workspace, warehouse)
    if not port_is_free(port):
        raise UserError(f"--port: {port}: already in use on 127.0.0.1; pick another with --port N")
    env = {**os.environ, WAREHOUSE_ENV: str(db.resolve())}
    typer.echo(f"tunelab dashboard: http://127.0.0.1:{port}  (warehouse {db}; Ctrl+C stops it)")
    raise typer.Exit(serve_until_stopped(streamlit_command(db.resolve(), port), env))


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_command)


def serve_until_stopped(command: list[str], env: dict[str, str]) -> int:
    """Run the server in the foreground; Ctrl+C or SIGTERM stops it too, never leaving it orphaned."""
    process = subprocess.Popen(command, env=env)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.terminate())
    try:
        return_code = process.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to both; give Streamlit time to shut down
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0 if return_code in (0, -signal.SIGTERM, -signal.SIGINT) else return_code
