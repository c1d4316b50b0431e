"""``nanoclaw sandbox build``: build (or confirm up to date) the agent sandbox image ``nanoclaw-agent``.

Shows the three steps (base, wheelhouse, image) with the latest log line of the running one; prints the
content tag and size; exit 1 with one clear line when a step fails or no Docker engine is reachable.
"""

from __future__ import annotations

import time

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column

from services.cli.common import console, out, progress_line
from services.harness.logging import get_logger

app = typer.Typer(help="The agent sandbox image.", no_args_is_help=True)
STEPS = ("base", "wheelhouse", "image")


@app.command()
def build(base_image: str = typer.Option(None, "--base-image",
                                         help="BASE_IMAGE to build on (default: python:3.11-slim-bookworm, "
                                              "else the local debootstrap base nanoclaw-base:bookworm)"),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="print every build log line")) -> None:
    """Build the agent image (a no-op when nothing changed); print its tag and size."""
    started = time.monotonic()
    result = build_with_progress(base_image, verbose)
    out.print(f"{result.tag} ({result.latest}) {result.status}, {result.size / 1e6:.0f} MB, "
              f"{time.monotonic() - started:.1f} s", highlight=False)


def build_logged(base_image: str | None = None):
    """Build (or confirm current) the agent image reporting each step as a log line: what ``nanoclaw up`` does
    when its console is not a terminal (a progress display there would be lines that are not JSON).

    Returns: the build result. Raises: typer.Exit(1) after logging the failure."""
    from deploy.images import ImageError
    from sandbox.image import build_agent_image_result

    log = get_logger("nanoclaw.sandbox")
    try:
        result = build_agent_image_result(lambda line: log.info("sandbox image build", step=line), base_image=base_image)
    except ImageError as exc:
        log.error("sandbox image build failed", error=str(exc))
        raise typer.Exit(1) from None
    log.info("sandbox image ready", tag=result.tag, status=result.status)
    return result


def build_with_progress(base_image: str | None = None, verbose: bool = False):
    """Build (or confirm current) the agent image with a progress display; ``nanoclaw up`` calls this too.

    Returns: the build result (``tag``, ``latest``, ``status`` built|cached, ``size`` bytes).
    Raises: typer.Exit(1) after printing the failed step and its reason.
    """
    # Imported here, not at module level: the rest of the CLI must keep working where the deploy package
    # (docker-py image machinery) is not importable.
    from deploy.images import ImageError
    from sandbox.image import build_agent_image_result

    with Progress(SpinnerColumn(finished_text="[green]✓[/green]"),
                  TextColumn("{task.fields[step]}", table_column=Column(width=10, no_wrap=True)),
                  TextColumn("{task.description}", table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis")),
                  TimeElapsedColumn(), console=console, transient=False, expand=True) as bar:
        tasks = {s: bar.add_task("waiting", step=s, total=1, start=False) for s in STEPS}
        current = [None]

        def progress(line: str) -> None:
            step, _, text = line.partition(": ")
            if step not in tasks:
                step, text = current[0] or "base", line
            if step != current[0]:
                # Steps run in order: entering one completes the ones before it.
                for earlier in STEPS[:STEPS.index(step)]:
                    bar.update(tasks[earlier], completed=1)
                bar.start_task(tasks[step])
                current[0] = step
            if verbose:
                bar.console.print(f"{step:<10} {text}", highlight=False, markup=False)
            bar.update(tasks[step], description=progress_line(text))

        try:
            result = build_agent_image_result(progress, base_image=base_image)
        except ImageError as exc:
            failed = current[0] or "base"  # before any step: the engine check, part of "base"
            bar.update(tasks[failed], description="[red]failed[/red]")
            for later in STEPS[STEPS.index(failed) + 1:]:
                bar.remove_task(tasks[later])
            bar.stop()
            console.print(f"[red]error[/red]: {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
        for step in STEPS:
            bar.update(tasks[step], completed=1)
        bar.update(tasks["image"], description=f"{result.status}: {result.tag}")
    return result
