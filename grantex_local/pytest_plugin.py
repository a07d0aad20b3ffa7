"""The pytest plugin (``pytest11`` entry point): a real, isolated Grantex per test.

Fixtures (all prefixed ``grantex_`` so they never clash with a project's own):

- ``grantex_clock``: the time every ledger and server of the test reads. It follows real time
  until moved (``advance``, ``set``), so codes, grants and tokens expire on demand without
  sleeping, in the library and over HTTP alike.
- ``grantex_ledger``: a fresh ledger file per test (``.path``, ``.ledger``, ``.gx``, ``.audit``);
  calling it (``grantex_ledger(seed=FILE_OR_DICT)``) makes another, seeded.
- ``grantex_server``: ``serve`` on a free loopback port over the test's ledger, issuer = its URL.
- ``grantex_session_server``: one server per session (per xdist worker), reset before each test.
- ``grantex_sdk``: the official ``grantex.Grantex`` client for ``grantex_server``.
- ``grantex_grant``: a factory of live grant tokens (root grants, or delegated from a parent).

Why a template: founding a ledger generates an RSA key and runs every migration (tens to hundreds
of milliseconds). A template is founded once per session and each test gets a file copy, with
what must differ between ledgers (its id, its approval-code secret) rewritten in the copy.
``--grantex-fresh-keys`` (or the ini option ``grantex_fresh_keys = true``) founds every ledger
from scratch instead, for suites that must not share signing keys between tests.

After the test body passes, the audit chain of every ledger the test used is verified; a broken
chain fails the test itself (not its teardown), naming the seq and the reason.

Importing this module must stay cheap: pytest imports it in every run of any project where
grantex-local is installed, so the library, the server and the SDK are imported inside fixtures.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .client import Grantex
    from .founding import Ledger
    from .models import AuditEntry, ExchangeTokenResponse

_USED = pytest.StashKey[list["GrantexLedgerHandle"]]()
"""The ledgers a test used, on its item: the chain check after the body reads them."""


# ── options ──────────────────────────────────────────────────────────────────


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grantex", "grantex-local fixtures")
    group.addoption("--grantex-fresh-keys", action="store_true", default=None,
                    help="found every grantex_ledger from scratch (new signing keys per test) "
                         "instead of copying a per-session template")
    parser.addini("grantex_fresh_keys", type="bool", default=False,
                  help="like --grantex-fresh-keys")


def _fresh_keys(config: pytest.Config) -> bool:
    option = config.getoption("grantex_fresh_keys")
    return bool(option) if option is not None else bool(config.getini("grantex_fresh_keys"))


# ── time ─────────────────────────────────────────────────────────────────────


class GrantexClock:
    """Real time plus an offset the test moves; every ledger and server of the test reads it.

    It keeps ticking (it is not frozen), so ids, stamps and the server's own waits behave as in
    production; moving it never goes through ``time.sleep``.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the epoch, as the ledger sees them."""
        return time.time() + self._offset

    __call__ = now  # a Clock, as Ledger(clock=...) and create_app(clock=...) take it

    def advance(self, seconds: float) -> None:
        """Move forward (a negative number moves back: audit stamps must then not go backwards,
        or the chain check fails the test)."""
        with self._lock:
            self._offset += float(seconds)

    def set(self, epoch: float) -> None:
        """Jump to ``epoch`` (seconds); time goes on from there."""
        with self._lock:
            self._offset = float(epoch) - time.time()

    def reset(self) -> None:
        """Back to real time (done before every test)."""
        with self._lock:
            self._offset = 0.0


# ── ledgers ──────────────────────────────────────────────────────────────────


class AuditAssertions:
    """What an agent's tests assert about the audit trail of one ledger (every developer)."""

    def __init__(self, handle: GrantexLedgerHandle) -> None:
        self._handle = handle

    def entries(self) -> list[AuditEntry]:
        """Every entry of every developer, by developer then seq."""
        from .audit.trail import list_entries
        from .paging import MAX_PAGE_SIZE

        found: list[AuditEntry] = []
        page = 1
        while True:
            batch = list_entries(self._handle.ledger, None, page=page, page_size=MAX_PAGE_SIZE)
            found.extend(batch)
            if len(batch) < MAX_PAGE_SIZE:
                return found
            page += 1

    def assert_logged(self, action: str, grant: Any = None, agent: Any = None,
                      status: str | None = None) -> AuditEntry:
        """The first entry with this action (and grant, agent, status when given); when there is
        none the assertion fails showing the entries nearest to what was asked."""
        given = {"action": action, "grant_id": _id_of(grant, "grant_id"),
                 "agent_id": _id_of(agent, "id"), "status": status}
        wanted = {k: v for k, v in given.items() if v is not None}
        entries = self.entries()
        for entry in entries:
            if all(getattr(entry, k) == v for k, v in wanted.items()):
                return entry
        asked = ", ".join(f"{k}={v!r}" for k, v in wanted.items())
        if not entries:
            raise AssertionError(f"no audit entry with {asked}: the audit trail is empty")
        ranked = sorted(entries, key=lambda e: (-_closeness(e, wanted), -e.seq))[:5]
        shown = "\n".join(f"  {_describe(e)}" for e in ranked)
        raise AssertionError(f"no audit entry with {asked} among {len(entries)}; nearest:\n{shown}")

    def assert_no_action_after_revocation(self) -> None:
        """No agent action was recorded under a grant after the grant's revocation entry."""
        late = [e for e in self.entries() if "after_revocation" in e.flags]
        if late:
            shown = "\n".join(f"  {_describe(e)}" for e in late[:10])
            raise AssertionError(f"{len(late)} audit entr{'y' if len(late) == 1 else 'ies'} recorded "
                                 f"after the grant was revoked:\n{shown}")


def _id_of(value: Any, attribute: str) -> str | None:
    """An id given as text, or the object that carries it (a token response, an Agent)."""
    if value is None or isinstance(value, str):
        return value
    found = getattr(value, attribute, None)
    if not isinstance(found, str):
        raise TypeError(f"expected an id or an object with .{attribute}, not {type(value).__name__}")
    return found


def _closeness(entry: AuditEntry, wanted: dict[str, str]) -> int:
    score = sum(2 if k == "action" else 1 for k, v in wanted.items() if getattr(entry, k) == v)
    action = wanted.get("action", "")
    if entry.action != action and action and entry.action.split(".")[:-1] == action.split(".")[:-1]:
        score += 1  # same namespace, another verb
    return score


def _describe(entry: AuditEntry) -> str:
    flags = f" flags={','.join(entry.flags)}" if entry.flags else ""
    return (f"seq {entry.seq} [{entry.developer_id}] action={entry.action!r} grant={entry.grant_id} "
            f"agent={entry.agent_id} status={entry.status} at {entry.timestamp}{flags}")


class GrantexLedgerHandle:
    """One test ledger: its file, an open :class:`~grantex_local.Ledger`, a facade on the
    default (sandbox) developer and audit assertions. Calling it makes another ledger."""

    def __init__(self, path: Path, ledger: Ledger, factory: _LedgerFactory) -> None:
        from .client import Grantex

        self.path = path
        self.ledger = ledger
        self.gx: Grantex = Grantex(ledger)
        self.audit = AuditAssertions(self)
        self.clock = factory.clock
        self._factory = factory
        self.closed = False

    def __call__(self, seed: str | os.PathLike[str] | dict[str, Any] | None = None) -> GrantexLedgerHandle:
        """A new ledger for the same test (seeded from a YAML/JSON file or a dict when given)."""
        return self._factory.new(seed=seed)

    def verify_chains(self) -> list[str]:
        """What is wrong with each developer's audit chain (empty: every chain verifies)."""
        from .audit.chain import verify_chain
        from .developers import list_developers
        from .errors import ChainBroken, GrantexLocalError

        problems = []
        try:
            for developer in list_developers(self.ledger):
                try:
                    verify_chain(self.ledger, developer.id)
                except ChainBroken as exc:
                    problems.append(f"{self.path}: developer {developer.id}: audit chain broken at "
                                    f"seq {exc.seq} ({exc.reason}): {exc.detail}")
        except GrantexLocalError as exc:
            problems.append(f"{self.path}: {exc}")
        return problems

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.ledger.close()

    def __repr__(self) -> str:
        return f"<grantex ledger {self.path}>"


class _Template:
    """The session's founded ledger file, closed and WAL-free, that tests copy."""

    def __init__(self, directory: Path) -> None:
        from .founding import Ledger

        self.path = directory / "template.db"
        ledger = Ledger(self.path)
        try:
            ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            ledger.close()  # the last connection: the -wal file goes, the file is whole
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def copy_to(self, target: Path, clock: GrantexClock) -> Ledger:
        """An open copy with its own identity: what tells two ledgers apart must not be shared."""
        import secrets
        import shutil

        from .founding import Ledger

        shutil.copyfile(self.path, target)
        os.chmod(target, 0o600)  # it holds private keys, like any ledger
        ledger = Ledger(target, create=False, clock=clock)
        conn = ledger.conn
        # A throwaway file: this connection (the test's) never waits for fsync, neither for the
        # rewrite nor for the checkpoint when it closes. The server's connections keep FULL.
        conn.execute("PRAGMA synchronous = OFF")
        try:
            with ledger.write():
                conn.execute("UPDATE settings SET value = ? WHERE key = 'ledger_id'",
                             ("lg_" + secrets.token_hex(8),))
                conn.execute("UPDATE local_secrets SET secret = ? WHERE name = 'approval_code_key'",
                             (secrets.token_bytes(32),))
        except BaseException:
            ledger.close()
            raise
        return ledger


class _LedgerFactory:
    """Makes the ledgers of one scope (a test, or the session) and closes them at its end."""

    def __init__(self, directory: Path, template: _Template | None, clock: GrantexClock,
                 used: list[GrantexLedgerHandle] | None) -> None:
        self.directory = directory
        self.template = template
        self.clock = clock
        self.used = used
        self.handles: list[GrantexLedgerHandle] = []

    def new(self, seed: str | os.PathLike[str] | dict[str, Any] | None = None) -> GrantexLedgerHandle:
        from .founding import Ledger

        path = self.directory / f"grantex-{len(self.handles)}.db"
        if self.template is not None:
            ledger = self.template.copy_to(path, self.clock)
        else:
            ledger = Ledger(path, clock=self.clock)
        handle = GrantexLedgerHandle(path, ledger, self)
        self.handles.append(handle)
        if self.used is not None:
            self.used.append(handle)
        if seed is not None:
            _apply_seed(ledger, seed)
        return handle

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


def _apply_seed(ledger: Ledger, seed: str | os.PathLike[str] | dict[str, Any]) -> None:
    try:
        from .seed import apply_seed
    except ImportError as exc:  # pragma: no cover - the seed module ships with the package
        raise RuntimeError(f"grantex_ledger(seed=...) needs grantex_local.seed: {exc}") from None
    apply_seed(ledger, seed)


# ── servers ──────────────────────────────────────────────────────────────────


class GrantexServerHandle:
    """A real server on loopback over a test ledger, in test mode (so it can be reset)."""

    def __init__(self, base_url: str, api_key: str, ledger: GrantexLedgerHandle, app: Any) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.ledger = ledger
        self.app = app

    def reset(self) -> None:
        """The ledger as the server started (this API key included), with the server running."""
        self.app.state.grantex.reset()

    def __repr__(self) -> str:
        return f"<grantex server {self.base_url}>"


def _start_server(stack: ExitStack, handle: GrantexLedgerHandle, clock: GrantexClock) -> GrantexServerHandle:
    from .developers import create_api_key, default_developer
    from .server.testing import running_server

    key = create_api_key(handle.ledger, default_developer(handle.ledger).id, "pytest").key
    running = stack.enter_context(running_server(handle.path, clock=clock, test_mode=True,
                                                 webhook_delivery=False))
    return GrantexServerHandle(running.base_url, key, handle, running.app)


# ── fixtures ─────────────────────────────────────────────────────────────────


@pytest.fixture(scope="session")
def grantex_session_clock() -> GrantexClock:
    """The one clock object of the session (the session server's connections keep it);
    ``grantex_clock`` puts it back to real time before each test."""
    return GrantexClock()


@pytest.fixture
def grantex_clock(grantex_session_clock: GrantexClock) -> Iterator[GrantexClock]:
    """Time for every ledger and server of this test: ``.now()``, ``.advance(s)``, ``.set(epoch)``."""
    grantex_session_clock.reset()
    yield grantex_session_clock
    grantex_session_clock.reset()


@pytest.fixture(scope="session")
def grantex_template(pytestconfig: pytest.Config,
                     tmp_path_factory: pytest.TempPathFactory) -> _Template | None:
    """The founded ledger each test copies (None with ``--grantex-fresh-keys``); per xdist
    worker, since ``tmp_path_factory`` is."""
    if _fresh_keys(pytestconfig):
        return None
    return _Template(tmp_path_factory.mktemp("grantex-template"))


@pytest.fixture
def grantex_ledger(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   grantex_template: _Template | None,
                   grantex_clock: GrantexClock) -> Iterator[GrantexLedgerHandle]:
    """A fresh ledger for this test; ``grantex_ledger(seed=...)`` makes more."""
    factory = _LedgerFactory(tmp_path_factory.mktemp("grantex", numbered=True), grantex_template,
                             grantex_clock, _used(request))
    try:
        yield factory.new()
    finally:
        factory.close()


@pytest.fixture
def grantex_server(grantex_ledger: GrantexLedgerHandle,
                   grantex_clock: GrantexClock) -> Iterator[GrantexServerHandle]:
    """``serve`` on 127.0.0.1:<free port> over this test's ledger, issuer = its URL."""
    with ExitStack() as stack:
        yield _start_server(stack, grantex_ledger, grantex_clock)


@pytest.fixture(scope="session")
def _grantex_session_server(tmp_path_factory: pytest.TempPathFactory, grantex_template: _Template | None,
                            grantex_session_clock: GrantexClock) -> Iterator[GrantexServerHandle]:
    factory = _LedgerFactory(tmp_path_factory.mktemp("grantex-session"), grantex_template,
                             grantex_session_clock, None)
    try:
        with ExitStack() as stack:
            yield _start_server(stack, factory.new(), grantex_session_clock)
    finally:
        factory.close()


@pytest.fixture
def grantex_session_server(request: pytest.FixtureRequest, _grantex_session_server: GrantexServerHandle,
                           grantex_clock: GrantexClock) -> GrantexServerHandle:
    """One server for the whole session (per xdist worker), reset before each test that uses it:
    cheaper than ``grantex_server`` when many tests need one."""
    _grantex_session_server.reset()
    _used(request).append(_grantex_session_server.ledger)
    return _grantex_session_server


@pytest.fixture
def grantex_sdk(grantex_server: GrantexServerHandle) -> Iterator[Any]:
    """The official ``grantex.Grantex`` client, with a sandbox key, for ``grantex_server``."""
    try:
        import grantex
    except ImportError:
        pytest.skip("grantex_sdk needs the official SDK: pip install grantex")
    client = grantex.Grantex(api_key=grantex_server.api_key, base_url=grantex_server.base_url)
    yield client
    close = getattr(client, "close", None)
    if callable(close):
        close()


GrantFactory = Callable[..., "ExchangeTokenResponse"]


@pytest.fixture
def grantex_grant(grantex_ledger: GrantexLedgerHandle) -> GrantFactory:
    """``grantex_grant(scopes, *, principal="user_test", parent=None, expires_in="1h",
    agent_name=None)``: a live grant on the test's ledger, through the sandbox flow (a root
    grant), or delegated from ``parent`` (a token response or a grant token) to a new agent."""
    counter = iter(range(1, 1_000_000))

    def make(scopes: list[str], *, principal: str = "user_test", parent: Any = None,
             expires_in: str | None = "1h", agent_name: str | None = None) -> ExchangeTokenResponse:
        gx: Grantex = grantex_ledger.gx
        name = agent_name or f"test-agent-{next(counter)}"
        agent = gx.agents.register(name=name, scopes=list(scopes))
        if parent is not None:
            token = parent if isinstance(parent, str) else parent.grant_token
            return gx.grants.delegate(parent_grant_token=token, sub_agent_id=agent.id,
                                      scopes=list(scopes), expires_in=expires_in)
        auth = gx.authorize(agent_id=agent.id, user_id=principal, scopes=list(scopes),
                            expires_in=expires_in)
        if auth.code is None:
            raise RuntimeError(f"the test ledger's developer did not approve at once: {auth}")
        return gx.tokens.exchange(code=auth.code, agent_id=agent.id)

    return make


def _used(request: pytest.FixtureRequest) -> list[GrantexLedgerHandle]:
    node = request.node
    if _USED not in node.stash:
        node.stash[_USED] = []
    return node.stash[_USED]


# ── the chain check ──────────────────────────────────────────────────────────


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After a passing body, every ledger the test used must still have a valid audit chain;
    failing here makes it the test's failure, not an error in some fixture's teardown."""
    result = yield
    handles = item.stash.get(_USED, [])
    problems = [p for handle in handles if not handle.closed for p in handle.verify_chains()]
    if problems:
        pytest.fail("grantex: the audit chain does not verify after the test:\n  "
                    + "\n  ".join(problems), pytrace=False)
    return result
