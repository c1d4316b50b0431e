"""Host firewall for the sandbox network: sandboxes may reach the host only on the relay ports.

Why: an internal Docker network stops forwarding (no internet, no other networks), but packets addressed to the
host itself arrive on INPUT, so any host service listening on 0.0.0.0 (sshd, a database) would be reachable
from a sandbox. A dedicated iptables chain on the network's bridge interface accepts the relay ports (NATS, the
model proxy) and drops everything else. Rebuilt at every runner start (idempotent).
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Sequence

from services.runner.sandbox.base import CommandExecutor, exec_command

log = logging.getLogger("nanoclaw.runner")


def chain_name(interface: str) -> str:
    return f"NC-{interface}"[:28]  # iptables chain names are at most 28 characters


def rules(interface: str, ports: Sequence[int]) -> list[list[str]]:
    """The iptables commands (without the binary), in order: (re)create the chain, accept the ports, drop the
    rest. The INPUT jump is added separately, once (see :func:`confine`)."""
    chain = chain_name(interface)
    out = [["-N", chain], ["-F", chain]]
    out += [["-A", chain, "-p", "tcp", "--dport", str(p), "-j", "ACCEPT"] for p in sorted(set(ports))]
    out.append(["-A", chain, "-j", "DROP"])
    return out


async def confine(interface: str, ports: Sequence[int], executor: CommandExecutor = exec_command,
                  iptables: str | None = None) -> bool:
    """Apply :func:`rules` and jump to the chain from INPUT for ``interface``. Returns False, with a warning
    naming what is exposed, when it cannot (not root, no iptables): the sandbox still runs."""
    binary = iptables or shutil.which("iptables")
    if binary is None or os.geteuid() != 0:
        log.warning("cannot install the sandbox firewall (%s): host services listening on 0.0.0.0 are reachable "
                    "from sandboxes", "no iptables" if binary is None else "not root")
        return False
    chain = chain_name(interface)
    for args in rules(interface, ports):
        result = await executor([binary, "-w", *args], timeout_s=10)
        if result.returncode != 0 and args[0] != "-N":  # -N fails when the chain exists: fine
            log.warning("sandbox firewall: iptables %s failed: %s", " ".join(args), result.stderr.strip())
            return False
    jump = ["INPUT", "-i", interface, "-j", chain]
    if (await executor([binary, "-w", "-C", *jump], timeout_s=10)).returncode != 0:
        result = await executor([binary, "-w", "-I", *jump], timeout_s=10)
        if result.returncode != 0:
            log.warning("sandbox firewall: cannot add the INPUT jump: %s", result.stderr.strip())
            return False
    log.info("sandbox firewall on %s: only tcp ports %s reach the host", interface, sorted(set(ports)))
    return True
