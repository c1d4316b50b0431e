"""``nanoclaw init``: create (or complete) the NATS identities and server configuration of the container
deployment (docs/deploy.md).

Writes into ``--dir`` (default ``<data_dir>/deploy``):
- ``identities.json`` (0600): every seed and key; kept across runs (``--rotate`` makes new ones);
- ``nats/accounts.conf``, ``nats/single.conf``, ``nats/cluster-{1,2,3}.conf`` (0644: public keys only);
- ``env/<identity>.env`` (0600): what each container gets (its nkey seed, inbox prefix, shared keys), and
  ``env/nats.env`` with the JetStream encryption key;
- ``admin.credentials.yml`` / ``reader.credentials.yml`` (0600): for the CLI on the host
  (``nanoclaw --credentials …``);
- ``single.env`` / ``cluster.env``: compose variables (``docker-compose --env-file``);
- ``runner/``: the runner's data directory (group folders, sessions), owned by uid 1000.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
import yaml

from deploy.identities import Identities, write_secret
from services.harness.natsperms import ADMIN, READER, SERVICE_ACCESS, inbox_prefix
from deploy.natsconf import CLUSTER_NODES, write_server_files
from services.cli.common import ConfigOption, console, load, out


def init(directory: Path = typer.Option(None, "--dir", help="where to write (default: <data_dir>/deploy)"),
         rotate: bool = typer.Option(False, "--rotate", help="replace every key (the JetStream key too: the "
                                     "existing encrypted store then cannot be read)"),
         docker_socket: Path = typer.Option(Path("/var/run/docker.sock"), "--docker-socket",
                                            help="the engine's socket, which only the Docker API proxy mounts"),
         config: Path | None = ConfigOption) -> None:
    """Generate an nkey per service, the admin, reader and sandbox-callout identities, and the NATS server
    configuration with least-privilege permissions; safe to re-run (existing keys are kept)."""
    settings, _ = load(config)
    docker_gid = _docker_gid(docker_socket)  # first: a failed init writes nothing
    directory = (directory or Path(settings.data_dir) / "deploy").resolve()
    store = directory / "identities.json"
    fresh = rotate or not store.exists()
    try:
        ids = Identities.generate() if fresh else Identities.load(store).complete()
    except ValueError as exc:
        console.print(f"[red]error[/red]: {exc} (move it away, or run `nanoclaw init --rotate`)")
        raise typer.Exit(2) from None
    ids.save(store)
    write_server_files(ids, directory / "nats")
    for path, text in deployment_env(ids).items():
        write_secret(directory / path, text)
    for name in (ADMIN, READER):
        creds = {"nats": {"nkey_seed": ids.seeds[name], "inbox_prefix": inbox_prefix(name)}}
        write_secret(directory / f"{name}.credentials.yml", yaml.safe_dump(creds))
    runner_dir = _runner_dir(directory / "runner")
    urls = {"single": ["nats://nats:4222"], "cluster": [f"nats://{node}:4222" for node in CLUSTER_NODES]}
    for profile, replicas in (("single", 1), ("cluster", 3)):
        (directory / f"{profile}.env").write_text(
            f"COMPOSE_PROFILES={profile}\nNANOCLAW_DEPLOY_DIR={directory}\n"
            f"NANOCLAW_NATS_URLS={json.dumps(urls[profile], separators=(',', ':'))}\nNANOCLAW_STREAM_REPLICAS={replicas}\n"
            f"NANOCLAW_RUNNER_DIR={runner_dir}\nNANOCLAW_DOCKER_SOCKET={docker_socket}\n"
            f"NANOCLAW_DOCKER_GID={docker_gid}\n")
    out.print(f"identities and NATS configuration in {directory} "
              f"({'new keys' if fresh else 'existing keys kept'}); next: docs/deploy.md")


def _runner_dir(path: Path) -> Path:
    """The runner's data directory (group folders, sessions): mounted at the same path in the runner container,
    since the sandboxes' bind mounts name host paths. Owned by uid 1000, the service image's and the sandbox's
    user (when init runs as root; otherwise the invoking user must be uid 1000)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, 1000, 1000)
    elif os.geteuid() != 1000:
        console.print(f"[yellow]warning[/yellow]: {path} is owned by uid {os.geteuid()}; the runner and its "
                      "sandboxes run as uid 1000 and cannot write there (chown it to 1000:1000)")
    return path


def _docker_gid(socket: Path) -> int:
    """The group of the engine's socket: the Docker API proxy gets that group and nothing else.

    Errors: exit 2 when the socket does not exist (no engine here: say where it is with --docker-socket)."""
    try:
        return socket.stat().st_gid
    except OSError as exc:
        console.print(f"[red]error[/red]: cannot read the Docker socket {socket}: {exc.strerror} "
                      "(pass --docker-socket)")
        raise typer.Exit(2) from None


def deployment_env(ids) -> dict[str, str]:
    """``env/<identity>.env`` text for every container: relative path → content."""
    files = {}
    for name in (*SERVICE_ACCESS, ADMIN, READER):
        lines = [f"NANOCLAW_CRED_NATS__NKEY_SEED={ids.seeds[name]}",
                 f"NANOCLAW_CRED_NATS__INBOX_PREFIX={inbox_prefix(name)}"]
        if name in ("runner", "broker"):
            lines.append(f"NANOCLAW_CRED_RUN_TOKEN_KEY={ids.run_token_key}")
        if name == "gateway":
            lines.append(f"NANOCLAW_CRED_WEBHOOK_TOKEN={ids.webhook_token}")
        if name == "runner":
            lines += [f"NANOCLAW_CRED_NATS__SANDBOX_ISSUER_SEED={ids.issuer_seed}",
                      f"NANOCLAW_CRED_NATS__CALLOUT_SEED={ids.seeds['sandbox-auth']}"]
        files[f"env/{name}.env"] = "\n".join(lines) + "\n"
    files["env/nats.env"] = f"NANOCLAW_JS_KEY={ids.js_key}\n"
    return files
