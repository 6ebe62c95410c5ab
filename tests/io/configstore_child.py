"""Child for the crash test: apply version after version to a ConfigStore until killed.

    python tests/io/configstore_child.py DIR FIRST_VERSION

Each version's text names its version and is long enough that a write takes a while.
Prints "ready" once, right before the first apply.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.io.configstore import ConfigStore


def text_of(version: int) -> str:
    return f"# version {version}\n" + f"# filler {version}\n" * 2000 + f"# end {version}\n"


def main() -> None:
    store = ConfigStore(Path(sys.argv[1]), keep=3)
    version = int(sys.argv[2])
    print("ready", flush=True)
    while True:
        store.accept(version, text_of(version), text_of(version).encode())
        if version % 2 == 0:
            store.confirm(version)
        version += 1


if __name__ == "__main__":
    main()
