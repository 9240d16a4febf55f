"""`python -m connect_sync.connect.sandbox`: the sandbox server alone (for the demo, tests)."""

from __future__ import annotations

import argparse
import os
import sys

from connect_sync.connect.sandbox.faults import Faults
from connect_sync.connect.sandbox.server import serve
from connect_sync.connect.sandbox.store import StoreError
from connect_sync.connect.sandbox.validation import ValidationError


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--error-rate", type=float, default=0.0, help="share answered 500/503")
    parser.add_argument(
        "--rate-limit",
        "--rate-limit-per-s",
        dest="rate_limit_per_s",
        type=float,
        default=None,
        help="429 with Retry-After above this many requests per second",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="share of dropped requests")
    parser.add_argument("--fault-seed", type=int, default=None, help="reproducible faults")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the local Connect API sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=os.environ.get("CONNECT_API_KEY", "sandbox-key"))
    parser.add_argument("--db", default=None, help="keep everything in this SQLite file")
    add_fault_arguments(parser)
    args = parser.parse_args(argv)
    try:
        faults = Faults.from_dict(
            {
                "error_rate": args.error_rate,
                "rate_limit_per_s": args.rate_limit_per_s,
                "latency_ms": args.latency_ms,
                "drop_rate": args.drop_rate,
                "seed": args.fault_seed,
            }
        )
    except ValidationError as exc:
        parser.exit(2, f"error: {exc.message}\n")
    try:
        serve(args.host, args.port, args.api_key, db=args.db, faults=faults)
    except StoreError as exc:
        parser.exit(2, f"error: {exc}\n")
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
