"""``twinguard ack``: acknowledge a latched FAILSAFE over the running agent's status socket.

The console equivalent of the reset button (the socket as for ``twinguard status``). Exit 0
when the agent accepted the ack, 1 when it refused (the reason is printed); 3 when the agent
is not running; 1 for no access, a timeout or a reply that makes no sense.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.cli.common import EXIT_FAILED, EXIT_OK, ask_agent, state_dir_option
from agent.io.status_client import send_ack

options = state_dir_option

EXIT_CODES = """exit status:
  0  the agent accepted the ack
  1  the agent refused it (the reason is printed), no access to its socket, a timeout or a
     reply that makes no sense
  2  bad usage
  3  the agent is not running (no socket in the state directory, or nothing listens on it)"""


def ack(args: argparse.Namespace) -> int:
    """Acknowledge a latched FAILSAFE (the console equivalent of the reset button)."""
    def send(path: Path) -> int:
        accepted, reason = send_ack(path)
        print(f"{'accepted' if accepted else 'refused'}: {reason}")
        return EXIT_OK if accepted else EXIT_FAILED

    return ask_agent("ack", args.state_dir, send)
