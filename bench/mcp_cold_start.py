"""MCP cold start benchmark (issue 20): spawn ``grantex-local mcp`` to its first ``tools/list`` answer.

What an assistant waits for when it starts the server: process start, the CLI, opening the ledger,
the MCP SDK, the ``initialize`` handshake and the tool list, timed from the client side with the
official SDK's stdio client. Floor: the same interpreter serving a bare ``MCPServer`` with no tools
and no ledger through the same handshake, so the ratio is what grantex-local adds on top of the
SDK's own start. Runs alternate ours/floor, with a warm bytecode cache (as in
:mod:`bench.cold_start`); each figure is the median. The CLI's cold start is the row next to it.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from grantex_local import Ledger

from .cold_start import console_script
from .common import Row, print_table

FLOOR_SERVER = ("from mcp.server.mcpserver import MCPServer; "
                "MCPServer('floor', log_level='WARNING').run('stdio')")


async def _first_list(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Milliseconds from spawn to the ``tools/list`` answer, and how many tools it named."""
    params = StdioServerParameters(command=command[0], args=command[1:], env=env)
    start = time.perf_counter()
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        elapsed = (time.perf_counter() - start) * 1000
    return elapsed, len(tools.tools)


def mcp_cold_start(workdir: Path, repeats: int = 15) -> Row:
    """Median spawn-to-``tools/list`` of ``grantex-local mcp`` against a bare MCPServer."""
    path = workdir / "mcp-cold-start.db"
    path.unlink(missing_ok=True)
    Ledger(path).close()
    ours = [*console_script(), "mcp", "--ledger", str(path)]
    floor = [sys.executable, "-c", FLOOR_SERVER]
    env = {"PYTHONPYCACHEPREFIX": str(workdir / "pycache")}

    def run(command: list[str]) -> tuple[float, int]:
        return asyncio.run(_first_list(command, env))

    _, named = run(ours)  # untimed: warms the file cache and writes bytecode
    if named < 13:
        raise RuntimeError(f"grantex-local mcp listed {named} tools, expected at least 13")
    run(floor)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        times[0].append(run(ours)[0])
        times[1].append(run(floor)[0])
    median = statistics.median
    extra = (f"median of {repeats} interleaved runs each, warm bytecode cache, spawn to the first "
             f"tools/list answer ({named} tools) through the mcp SDK's stdio client (best: ours "
             f"{min(times[0]):.0f} ms, floor {min(times[1]):.0f} ms)")
    return Row("MCP cold start, grantex-local mcp to tools/list", "ms", median(times[0]), median(times[1]),
               "<= 1.50x", "bare MCPServer (no tools, no ledger) to tools/list", extra)


if __name__ == "__main__":  # python -m bench.mcp_cold_start [REPEATS]
    with tempfile.TemporaryDirectory(prefix="grantex-mcp-cold-start-") as tmp:
        print_table([mcp_cold_start(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 15)])
