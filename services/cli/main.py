"""The ``nanoclaw`` command."""

from __future__ import annotations

import typer

from services.cli import cmd_audit, cmd_chat, cmd_doctor, cmd_events, cmd_groups, cmd_sandbox, cmd_up, cmd_whatsapp
from services.cli import cmd_gov
from services.cli import cmd_ext
from services.cli import cmd_deploy, cmd_init
from services.cli import cmd_tasks
from services.cli import cmd_events_contract
from services.cli import cmd_service
from services.cli import cmd_dlq, cmd_status

app = typer.Typer(name="nanoclaw", help="NanoClaw Bus: a personal Claude assistant on an event-sourced message bus.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
app.command()(cmd_up.up)
app.add_typer(cmd_service.app, name="service")
app.command()(cmd_doctor.doctor)
app.command()(cmd_chat.chat)
app.command()(cmd_status.status)
app.command()(cmd_status.failures)
app.add_typer(cmd_groups.app, name="groups")
app.add_typer(cmd_tasks.app, name="tasks")
app.add_typer(cmd_gov.app, name="gov")
app.add_typer(cmd_ext.app, name="ext")
app.add_typer(cmd_whatsapp.app, name="whatsapp")
app.add_typer(cmd_events.app, name="events")
cmd_events.app.command()(cmd_events_contract.asyncapi)
cmd_events.app.command()(cmd_events_contract.credentials)
app.add_typer(cmd_dlq.app, name="dlq")
app.add_typer(cmd_audit.app, name="audit")
app.add_typer(cmd_sandbox.app, name="sandbox")
app.add_typer(cmd_deploy.app, name="deploy")
app.command(name="init")(cmd_init.init)

if __name__ == "__main__":
    app()
