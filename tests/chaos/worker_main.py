"""Run one legato worker in this process, for the suites that kill or signal it.

    python tests/chaos/worker_main.py URL [--lease S] [--concurrency N]
        [--poll S] [--sweep S] [--grace S] [--pool thread|process|asyncio]

Prints ``ready <worker id>`` on stdout once the database is open, logs to
stderr, and exits 0 after a clean stop (SIGTERM or SIGINT), 130 when a second
signal stops it at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import chaos.tasks  # noqa: F401  (registers the chaos.* tasks)
import legato


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--sweep", type=float, default=0.5)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--pool", default="thread")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s %(message)s",
    )
    client = legato.Client(args.url)
    worker = legato.Worker(
        client,
        concurrency=args.concurrency,
        lease=args.lease,
        poll_interval=args.poll,
        sweep_interval=args.sweep,
        shutdown_grace=args.grace,
        pool=args.pool,
    )
    print("ready", worker.worker_id, flush=True)
    try:
        worker.run()
    except KeyboardInterrupt:  # a second signal: stop at once
        logging.getLogger("chaos").warning("worker stopped at once")
        return 130
    finally:
        worker.close()
        client.close()
    logging.getLogger("chaos").info("worker stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
