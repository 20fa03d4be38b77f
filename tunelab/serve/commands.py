"""`tunelab serve MODEL`: an OpenAI-compatible chat server for a local model (the LLM judge, a quick try).

The model stack is imported inside the command: `tunelab --help` must not load torch or transformers.
"""

from __future__ import annotations

import ipaddress
import signal
from enum import StrEnum
from typing import Annotated, Any

import typer

from tunelab.cliopts import WorkspaceOption
from tunelab.errors import UserError
from tunelab.workspace import as_workspace


class Quantization(StrEnum):
    none = "none"
    nf4 = "nf4"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the server like Ctrl-C: the port is closed, exit 0


def serve_command(
    model: Annotated[
        str,
        typer.Argument(
            metavar="MODEL",
            help="smollm2-135m | tunelab-tiny | a model folder | a hub name already in the local cache",
        ),
    ],
    adapter: Annotated[
        str | None,
        typer.Option(
            "--adapter", help="a LoRA adapter on top: a run id of the workspace or an adapter folder"
        ),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="address to listen on (127.0.0.1: this machine only)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="port (0: any free one)")] = 8000,
    workspace: WorkspaceOption = None,
    max_batch: Annotated[
        int,
        typer.Option(
            "--max-batch", min=1, max=256, help="requests with the same settings generated together, at most"
        ),
    ] = 1,
    name: Annotated[
        str | None,
        typer.Option("--name", help="the model id clients send (default: MODEL, or the --adapter value)"),
    ] = None,
    quantization: Annotated[
        Quantization, typer.Option("--quantization", help="none (default) or nf4 (4-bit, bitsandbytes)")
    ] = Quantization.none,
) -> None:
    """Serve MODEL at http://HOST:PORT/v1 (OpenAI chat completions) until Ctrl-C or SIGTERM."""
    from tunelab.modeling.config import ModelSettings
    from tunelab.serve.engine import Engine, adapter_base, check_local, load_served_model
    from tunelab.serve.server import ChatServer

    ws = as_workspace(workspace)
    model_id = name or adapter or model
    previous = signal.signal(signal.SIGTERM, _stop)
    server = None
    try:
        try:  # listen first: a port in use fails in a second, not after the model has loaded
            server = ChatServer((host, port), engine=None, model_id=model_id)
        except OSError as exc:
            raise UserError(f"--port: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        # the quick checks first, so a mistake is the only line printed
        check_local(model, ModelSettings(base_model=model))
        if adapter is not None:
            adapter_base(adapter, ws)
        typer.echo(f"loading {model}{f' + adapter {adapter}' if adapter else ''} …", err=True)
        loaded, tokenizer = load_served_model(model, adapter, ws, quantization.value)
        server.engine = Engine(loaded, tokenizer, max_batch=max_batch)
        if not _loopback(host):
            typer.echo(
                f"note: listening on {host} without authentication: anyone who can reach this port can use it",
                err=True,
            )
        typer.echo(f"serving {model_id} at {server.url}", err=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            server.server_close()
            if server.engine is not None:
                server.engine.close()
    typer.echo("stopped", err=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
