"""``GET /v1/events/stream``: the caller's events as Server-Sent Events (SDK-SURFACE §9).

The events come from the ledger's outbox (:mod:`grantex_local.events`), not from an in-process
bus: a grant revoked by the CLI in another process reaches every open stream within one poll.

Why an async generator polling in short thread-pool calls: a stream may stay open for hours,
and a synchronous route would hold one of the pool's worker threads all that time (sixteen
streams would starve every other request). Each poll is one indexed query on the calling
thread's ledger (:class:`~..state.LedgerPool`), then the coroutine sleeps.

Beyond the hosted service: each event carries an ``id: <seq>`` line (the SDK reads only
``data:`` lines), so a client sending ``Last-Event-ID`` resumes where it left off; without it
a stream starts at "now". Streams end when the server starts stopping (see
:meth:`~..state.ServerState.is_stopping`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ... import errors
from ... import events as events_lib
from ..auth import CallerDep
from ..errors import ApiError
from ..state import ServerState

router = APIRouter(tags=["events"])
log = logging.getLogger("grantex_local.server")

POLL_SECONDS = 0.1
KEEPALIVE_SECONDS = 15.0
BATCH = 500
HEADERS = {"cache-control": "no-cache", "connection": "keep-alive", "x-accel-buffering": "no"}


def _cursor(header: str | None) -> int | None:
    if header is None or not header.strip():
        return None
    text = header.strip()
    if not text.isdigit() or len(text) > 18:
        raise ApiError(400, "BAD_REQUEST", "Last-Event-ID must be an event sequence number")
    return int(text)


def frame(event: events_lib.Event) -> str:
    """One SSE message; the envelope is one line (compact JSON escapes newlines)."""
    return f"id: {event.seq}\ndata: {event.body}\n\n"


class _Slot:
    """A held stream slot, given back exactly once: by the stream when it ends, or when the
    never-started stream is dropped (a client gone before the first byte never runs the
    generator's ``finally``)."""

    def __init__(self, state: ServerState, developer_id: str) -> None:
        self.state, self.developer_id, self.held = state, developer_id, True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.state.streams.release(self.developer_id)

    def __del__(self) -> None:
        self.release()


async def _stream(state: ServerState, developer_id: str, after: int,
                  types: tuple[str, ...] | None, slot: _Slot) -> AsyncIterator[str]:
    def poll(cursor: int) -> list[events_lib.Event]:
        return events_lib.read_events(state.ledgers.get(), developer_id, after=cursor,
                                      types=types, limit=BATCH)

    try:
        yield ": connected\n\n"
        last_sent = time.monotonic()
        while not state.is_stopping():
            try:
                found = await run_in_threadpool(poll, after)
            except (errors.GrantexLocalError, RuntimeError) as exc:
                # The ledger went away (shutdown closed the pool) or stayed busy: end the
                # stream cleanly; the client reconnects with Last-Event-ID and loses nothing.
                log.warning("event stream ended: %s", exc)
                return
            if found:
                after = found[-1].seq
                yield "".join(frame(e) for e in found)
                last_sent = time.monotonic()
                if len(found) == BATCH:
                    continue  # a backlog: read on without sleeping
            elif time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(POLL_SECONDS)
    finally:
        slot.release()


@router.get("/v1/events/stream", summary="Stream the developer's events (Server-Sent Events)",
            response_class=StreamingResponse)
async def stream_events(
    caller: CallerDep,
    types: str | None = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """``types``: comma-separated event types (unknown ones are refused with 400).
    ``Last-Event-ID``: resume after that sequence number; without it, only new events."""
    wanted = events_lib.check_types(types.split(",")) if types is not None else None
    if wanted == ():
        wanted = None  # "?types=" filters nothing, like no parameter
    after = _cursor(last_event_id)
    state, developer_id = caller.state, caller.developer_id
    if state.is_stopping():
        raise ApiError(503, "SHUTTING_DOWN", "the server is stopping")
    if after is None:
        after = await run_in_threadpool(
            lambda: events_lib.last_seq(state.ledgers.get(), developer_id))
    if not state.streams.acquire(developer_id):
        raise ApiError(429, "TOO_MANY_CONNECTIONS",
                       f"at most {state.streams.LIMIT} open event streams per developer")
    slot = _Slot(state, developer_id)
    return StreamingResponse(_stream(state, developer_id, after, wanted, slot),
                             media_type="text/event-stream", headers=HEADERS)
