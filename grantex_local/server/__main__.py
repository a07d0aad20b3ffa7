"""``python -m grantex_local.server``: run the server without the CLI (tests, benchmarks)."""

from .run import main

main()
