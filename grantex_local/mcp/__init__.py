"""The ledger as an MCP server (``grantex-local mcp``): the hosted ``@grantex/mcp`` tools over a file.

Kept a package of its own so the official ``mcp`` SDK is imported only when the server runs:
importing ``grantex_local.mcp`` loads nothing (the tools live in :mod:`.server`). Inside this
package the SDK is always reached by absolute import (``from mcp.server ...``), which Python 3
resolves to the top-level ``mcp`` distribution, never to this package.
"""

from __future__ import annotations
