"""Crash-test child: append batches to a spool forever, report each one after it committed.

    python tests/io/spool_child.py <spool path> <run id> <seed>

Output lines (flushed, written only AFTER the call returned):
    R <next_seq>                           ready, the spool is open
    C <first> <last> <run> <batch>         batch committed durably; payload of seq first+i
                                           is b"<run>:<batch>:<i>"
    a <seq>                                about to ack up to seq (may or may not happen)
    A <seq> <deleted>                      ack returned
The parent kills this process with SIGKILL at a random moment.
"""

from __future__ import annotations

import random
import sys
import time

from agent.io.spool.store import Spool
from agent.model.spool import Overflow


def main(argv: list[str]) -> int:
    path, run, seed = argv[0], int(argv[1]), int(argv[2])
    rng = random.Random(seed)
    spool = Spool.open(path, max_bytes=64 << 20, max_records=1_000_000, overflow=Overflow.STOP)
    out = sys.stdout
    out.write(f"R {spool.next_seq}\n")
    out.flush()
    batch = 0
    while True:
        n = rng.randint(1, 50)
        records = [f"{run}:{batch}:{i}".encode() for i in range(n)]
        result = spool.append(records, time.time())
        if not result.durable:
            out.write(f"F {result.status.value}\n")
            out.flush()
            return 1
        out.write(f"C {result.first_seq} {result.last_seq} {run} {batch}\n")
        out.flush()
        batch += 1
        if rng.random() < 0.05:
            backlog = spool.backlog()
            if backlog.first_seq is not None and backlog.last_seq is not None:
                upto = rng.randint(backlog.first_seq, backlog.last_seq)
                out.write(f"a {upto}\n")
                out.flush()
                deleted = spool.ack(upto)
                out.write(f"A {upto} {deleted}\n")
                out.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
