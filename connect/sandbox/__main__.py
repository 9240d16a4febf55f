"""`python -m connect.sandbox`: the sandbox server alone (used by the demo and the tests)."""

from __future__ import annotations

import argparse
import os

from connect.sandbox.server import serve


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the local Connect API sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=os.environ.get("CONNECT_API_KEY", "sandbox-key"))
    args = parser.parse_args()
    serve(args.host, args.port, args.api_key)


if __name__ == "__main__":
    main()
