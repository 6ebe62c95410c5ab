"""``python -m agent``: the same as the ``twinguard`` command."""

from __future__ import annotations

from agent.cli.main import main

raise SystemExit(main())
