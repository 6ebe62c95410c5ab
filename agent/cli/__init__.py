"""cli: the ``twinguard`` command line; one module per command, the only place that prints.

Lives here: ``main`` (the parser, the table of commands, the console script's entry point),
``common`` (options, defaults and error reporting the commands share) and one module per
command, named for it: ``check``, ``read``, ``run``, ``demo``, ``systemd_unit``, ``keys``,
``config``, ``audit``, ``certs``, ``status``, ``ack``, ``drill`` (with ``drillpage``, its
HTML report). Each holds ``options(parser)`` and the
handler named for the command, ``def NAME(args) -> int``, whose docstring's first line is
its help.

May import: every layer of ``agent`` and ``firmware_bridge``; ``sim`` only from ``demo``
(the demo entry). Nothing else imports ``agent.cli``. A command keeps what only it needs
(the runtime, the Modbus stack, rich, cryptography) inside its handler, so that building
the parser and ``twinguard check`` load none of it; those local imports say so. ``print``
is allowed here and nowhere else in ``agent`` (ruff T20).

Exit codes: 0 success; 1 the command failed at run time (or something it needs is missing
on this machine); 2 bad usage or a bad profile or configuration (argparse's own convention
for usage errors); 3 the PLC or the agent cannot be reached (``read``, ``status``, ``ack``,
``drill``), or ``config verify`` could not check the signatures. Each command's own are its module's
``EXIT_CODES`` (the epilog of its ``--help``), tabled in the README's "Exit codes".
Problems go to stderr, one per line, as ``FILE: KEY.PATH: reason``.
"""
