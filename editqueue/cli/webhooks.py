"""`editqueue webhooks …`: tools for receiving webhooks while developing."""

from __future__ import annotations

import click

from editqueue.cli.jobs import api_client, api_options


@click.group()
def webhooks() -> None:
    """Webhook tools for local development."""


@webhooks.command()
@click.option(
    "--forward-to",
    metavar="URL",
    help="Also POST every delivery, unchanged and with its headers, to this URL.",
)
@click.option("--port", type=int, default=9000, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--secret",
    envvar="EDITQUEUE_WEBHOOK_SECRET",
    metavar="whsec_…",
    help="Check signatures with this secret (default: $EDITQUEUE_WEBHOOK_SECRET, else the "
    "tenant's, fetched from the API when an API key is set).",
)
@api_options
def listen(
    forward_to: str | None,
    port: int,
    host: str,
    secret: str | None,
    api_url: str,
    api_key: str | None,
) -> None:
    """Receive webhooks locally: print each event and whether its signature verifies.

    Point a job's webhook_url or an endpoint at the printed URL (the server must be
    allowed to reach it: EDITQUEUE_ALLOW_PRIVATE_URLS=127.0.0.0/8 for a local stack).
    Without --secret, an API key makes the listener fetch the tenant's signing secret
    (the one per-job webhook_url deliveries are signed with).
    """
    from editqueue.cli.listener import Listener, make_server

    if secret is not None and not secret.startswith("whsec_"):
        raise click.BadParameter("a signing secret starts with whsec_", param_hint="--secret")
    if secret is None and api_key:
        with api_client(api_url, api_key) as client:
            secret = client.webhooks.secret()
        click.echo("checking signatures with the tenant's secret (from the API)")
    listener = Listener(secret=secret, forward_to=forward_to, echo=click.echo)
    try:
        server = make_server(listener, host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    where = f"http://{host}:{server.server_address[1]}/"
    target = f", forwarding to {forward_to}" if forward_to else ""
    click.echo(f"listening on {where}{target} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        listener.client.close()
