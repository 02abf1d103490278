"""A worker process for tests: ``python -m tests.support.job_worker URL [--concurrency N] [--lease S]``.

Runs a ``WorkerPool`` over the test handlers until SIGTERM, exactly as ``nodewright worker`` does
over the product's handlers.
"""

from __future__ import annotations

import argparse
import logging

from nodewright.jobs.worker import WorkerPool
from nodewright.security.redaction import install_logging_filter
from tests.support.job_handlers import REGISTRY


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--mode", default="thread")
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s: %(message)s")
    install_logging_filter()
    pool = WorkerPool(
        options.database_url,
        concurrency=options.concurrency,
        mode=options.mode,
        registry=REGISTRY,
        lease_seconds=options.lease,
        poll_interval=options.poll,
    )
    pool.run_forever(shutdown_timeout=5.0)


if __name__ == "__main__":
    main()
