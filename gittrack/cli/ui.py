"""The web UI's commands: `gittrack ui` serves it, `gittrack report` writes one offline file."""

from __future__ import annotations

import click

from . import Context, check_folder, cli, pass_context, write_file


@cli.command("ui")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; 0.0.0.0 exposes the UI to the network.",
)
@click.option(
    "--open", "open_browser", is_flag=True, help="Open the UI in the default web browser."
)
@pass_context
def ui(obj: Context, port: int, host: str, open_browser: bool) -> None:
    """Serve the local, read-only web UI: runs table, plots, comparisons and flow graphs.

    \b
    Example:
      gittrack ui                 # http://127.0.0.1:8765/
      gittrack ui --port 9000 --open
    """
    import os
    import socket

    from .._extras import require
    from ..errors import GittrackError

    require("gittrack ui", "ui", "starlette", "jinja2", "uvicorn", "plotly")
    import uvicorn

    from ..ui import create_app

    repo = obj.repo()
    try:  # bound here so that a busy port fails in one sentence and port 0 gets its real number
        sock = socket.create_server((host, port))
    except OSError as exc:
        raise GittrackError(
            f"Cannot serve on {host}:{port} ({os.strerror(exc.errno) if exc.errno else exc}); "
            "stop what uses it or pick another port with --port."
        ) from exc
    port = sock.getsockname()[1]
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"Warning: serving on {host} makes every run, parameter, log and output of "
            f"{repo.root} readable by anyone who can reach this machine on port {port}.",
            err=True,
        )
    app = create_app(repo, host=host, port=port)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/"
    click.echo(f"gittrack UI for {repo.root} at {url} (Ctrl+C to stop)")
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])


@cli.command("report")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, writable=True),
    default="report.html",
    show_default=True,
    help="The HTML file to write.",
)
@click.option("--where", default="", help="Only runs matching this query.")
@click.option("--title", default="", help="Title of the report (default: the repository's name).")
@pass_context
def report(obj: Context, output: str, where: str, title: str) -> None:
    """Write one self-contained HTML report: runs table, plots and the flow graph, offline.

    \b
    Example:
      gittrack report -o report.html
      gittrack report --where "experiment = 'temp-scan'" -o scan.html
    """
    from .._extras import require

    require("gittrack report", "ui", "starlette", "jinja2", "plotly")
    from ..ui.report import build_report

    check_folder(output)
    repo = obj.repo()
    html, count = build_report(repo, where or None, title=title or None)
    write_file(output, html.encode())
    click.echo(f"Wrote {output} ({count} runs, {len(html.encode()) / 1e6:.1f} MB).")
