"""Running library work off the UI thread, and turning its errors into notifications.

Why: a query on a large ledger, or a write waiting for another process's lock
(the busy timeout is 15 s), must never freeze the screen, and a refused action
(revoking a grant someone else just revoked) is news for the user, not a
traceback. Every call the widgets make to :class:`~grantex_local.tui.data.TuiData`
goes through :func:`db_job`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from textual.dom import DOMNode
from textual.worker import Worker, get_current_worker

from ..errors import GrantexLocalError

T = TypeVar("T")


def db_job(
    node: DOMNode,
    job: Callable[[], T],
    then: Callable[[T], Any] | None = None,
    *,
    failed: Callable[[GrantexLocalError], Any] | None = None,
    group: str = "db",
    exclusive: bool = False,
    title: str = "grantex-local",
) -> Worker[None]:
    """Run ``job`` in a thread worker owned by ``node``; hand its result to ``then`` on the UI thread.

    A :class:`GrantexLocalError` becomes an error notification (and ``failed`` is
    called); any other exception is a bug, reported the same way so that the
    app stays up. With ``exclusive`` a newer job of the same group supersedes an
    older one, whose result is then dropped.
    """
    app = node.app

    def deliver(callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            app.call_from_thread(callback, *args, **kwargs)
        except RuntimeError:  # the app is shutting down
            pass

    def work() -> None:
        worker = get_current_worker()
        try:
            result = job()
        except GrantexLocalError as exc:
            if not worker.is_cancelled:
                deliver(app.notify, exc.message, title=title, severity="error", timeout=8)
                if failed is not None:
                    deliver(failed, exc)
            return
        except Exception as exc:  # a bug: tell the user, keep the app running
            deliver(app.notify, f"unexpected error: {type(exc).__name__}: {exc}", title=title,
                    severity="error", timeout=12)
            if failed is not None:
                deliver(failed, GrantexLocalError(str(exc)))
            return
        if then is not None and not worker.is_cancelled:
            deliver(then, result)

    return node.run_worker(work, thread=True, group=group, exclusive=exclusive, exit_on_error=False)
