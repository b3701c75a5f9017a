"""The disk's share of a small upload's commit, now and with deferred file durability (not built).

``run.durable_floor`` measures, with no server, what Packhouse's local store does to make a small
upload durable (the "fsyncs alone" floor of the upload rows). With ``deferred=True`` it measures
the idea left for later (bench/README.md, the verdict): the file's bytes committed in the row's
own SQLite transaction, one WAL fsync for both, and the file and its directory fsynced in the
background after the answer. The two are measured in alternating rounds, so that the disk's
drift affects both alike.

    python bench/deferred_floor.py [ROUNDS]     # default 6 rounds of 150 uploads each way
"""

from __future__ import annotations

import statistics
import sys

from run import durable_floor
from servers import WORK


def main(rounds: int) -> None:
    p50: dict[str, list[float]] = {"now": [], "deferred": []}
    for _ in range(rounds):
        for mode, out in p50.items():
            result = durable_floor(WORK / "floor-deferred", 150, deferred=mode == "deferred")
            out.append(float(result["p50_ms"]))  # type: ignore[arg-type]
    for mode, values in p50.items():
        shown = ", ".join(f"{v:.3f}" for v in values)
        print(f"{mode:9s} p50 of the rounds' p50s {statistics.median(values):.3f} ms ({shown})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 6)
