"""``/v1/revocations`` (snapshot and long-poll) and ``/v1/revocations/stream`` (SSE): the feed
the SDK follows with ``revocation_check="feed"`` (SDK-SURFACE §10; the library side is
:mod:`grantex_local.revocation_feed`). ``/v1/revocations/status`` lives with the grants.

Why these routes are ``async`` when the others are not: a long-poll holds its request for up
to :data:`MAX_WAIT` seconds and a stream for as long as the client listens. Held in a worker
thread each would take one of the pool's threads for that long, and a few idle SDK clients
would starve every other route. So they wait on the event loop and read the ledger in short
thread-pool calls (each thread on its own connection, as everywhere), every
:data:`POLL_INTERVAL` seconds: another process's revocation reaches a client within about that.

The stream is sent whatever the request's ``Accept`` says: the SDK asks for
``application/json`` even there. Its liveness signal is a *named* ``heartbeat`` event every
:data:`HEARTBEAT_INTERVAL` seconds; the SDK counts no comment line, and denies every call once
it has heard nothing for 5 s. Both end within one poll once the server starts stopping
(:meth:`~..state.ServerState.is_stopping`): uvicorn waits for open responses before it lets
the app shut down.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ... import errors, events
from ... import revocation_feed as feed
from ..auth import Caller, CallerDep
from . import ok

router = APIRouter(tags=["revocations"])

MAX_WAIT = 30.0
"""Seconds a long-poll may be held at most, whatever ``wait`` asks."""
POLL_INTERVAL = 0.1
HEARTBEAT_INTERVAL = 1.0


def _wait_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise errors.InvalidInput("wait must be a number of seconds (0 or more)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise errors.InvalidInput("wait must be a number of seconds (0 or more)")
    return min(seconds, MAX_WAIT)


def _page_size(value: str | None) -> int:
    if value is None:
        return feed.DEFAULT_PAGE_SIZE
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= feed.MAX_PAGE_SIZE):
        raise errors.InvalidInput(f"pageSize must be between 1 and {feed.MAX_PAGE_SIZE}")
    return int(value)


def _delta(caller: Caller, cursor: int) -> feed.Delta:
    """In a worker thread: that thread's own ledger connection."""
    return feed.delta(caller.ledger(), caller.developer_id, cursor)


@router.get("/v1/revocations", summary="What is revoked or suspended now, or what changed since a cursor")
async def revocations(
    caller: CallerDep,
    since: str | None = None,
    wait: str | None = None,
    pageToken: str | None = None,
    pageSize: str | None = None,
) -> JSONResponse:
    """Without ``since``: one page of the snapshot (``{entries, cursor, nextPageToken}``).
    With ``since``: the entries after that cursor (``{entries, cursor}``), held up to ``wait``
    seconds (at most 30) until there is one, then answered, empty if nothing changed."""
    if since is None:
        if wait is not None:
            raise errors.InvalidInput("wait needs since (the cursor to wait for changes after)")
        size = _page_size(pageSize)
        page = await run_in_threadpool(
            lambda: feed.snapshot(caller.ledger(), caller.developer_id, page_token=pageToken or None,
                                  page_size=size))
        return ok(page.to_dict())
    if pageToken is not None:
        raise errors.InvalidInput("pageToken belongs to a snapshot; a request with since has no pages")
    cursor = feed.parse_cursor(since)
    seconds = _wait_seconds(wait) if wait is not None else 0.0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    state = caller.state
    while True:
        found = await run_in_threadpool(_delta, caller, cursor)
        cursor = found.cursor
        left = deadline - loop.time()
        if found.entries or left <= 0 or state.is_stopping():
            return ok(found.to_dict())
        await asyncio.sleep(min(POLL_INTERVAL, left))


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.get("/v1/revocations/stream", summary="The revocation feed as server-sent events")
async def revocations_stream(caller: CallerDep, since: str | None = None) -> StreamingResponse:
    """``event: ready``, then ``event: revocation`` with one entry per ``data:`` line as
    changes arrive after ``since`` (default: now), and ``event: heartbeat`` every second."""
    if since is not None:
        start = feed.parse_cursor(since)
    else:
        start = await run_in_threadpool(lambda: events.last_seq(caller.ledger(), caller.developer_id))
    state = caller.state

    async def body() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        cursor = start
        yield _sse("ready", {"cursor": cursor})
        beat = loop.time() + HEARTBEAT_INTERVAL
        while not state.is_stopping():
            found = await run_in_threadpool(_delta, caller, cursor)
            cursor = found.cursor
            if found.entries:
                yield b"".join(_sse("revocation", entry.to_dict()) for entry in found.entries)
            if loop.time() >= beat:
                yield _sse("heartbeat", {"cursor": cursor})
                beat = loop.time() + HEARTBEAT_INTERVAL
            await asyncio.sleep(POLL_INTERVAL)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
