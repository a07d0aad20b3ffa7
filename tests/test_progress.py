"""Long work shows progress: a bar on a terminal's stderr, nothing in pipes or with ``--json``.

The CLI runs in a fresh interpreter with stderr on a real pseudo-terminal (``pty``) and stdout on
a pipe, so the test sees what a person at a terminal sees on each stream. Its only change from
``grantex-local`` itself is :data:`~grantex_local.cli.progress.SHOW_AFTER` set to zero: the bar
then appears however fast this machine is, with no clock in the assertions. The library
callbacks are checked on the contract of :mod:`grantex_local.progress`: ``done`` never goes
back, the last call is ``done == total``, and a callback is called about a hundred times however
many rows there are.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grantex_local import Ledger
from grantex_local.progress import Tally

ENTRIES = 3_000
"""Audit entries of the sample the commands work on: seconds of work, not minutes."""
MOST_CALLS = 105
"""A callback's calls at most: one a hundredth of the total, and a few for the ends."""

LAUNCH = (
    "import sys\n"
    "from grantex_local.cli import progress\n"
    "progress.SHOW_AFTER = 0.0\n"
    "from grantex_local.cli import main\n"
    "sys.argv[0] = 'grantex-local'\n"
    "main()\n"
)
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-B]|[\r\x07]")


@dataclass
class Run:
    code: int
    stdout: bytes
    stderr: bytes

    @property
    def shown(self) -> str:
        """stderr as text with the terminal's control sequences taken out."""
        return ANSI.sub("\n", self.stderr.decode("utf-8", "replace"))


def _drain(fd: int, into: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed its end of the terminal
            return
        if not chunk:
            return
        into.append(chunk)


def run(cwd: Path, *args: str, terminal: bool) -> Run:
    """The CLI in ``cwd`` (its default ledger ./grantex.db), stderr on a terminal or a pipe."""
    command = [sys.executable, "-c", LAUNCH, *args]
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("GRANTEX_LEDGER", None)
    env.pop("COLUMNS", None)
    if not terminal:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL,
                              timeout=300)
        return Run(done.returncode, done.stdout, done.stderr)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(master, chunks))
    try:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        reader.start()
        stdout, _ = proc.communicate(timeout=300)
        reader.join(timeout=30)
    finally:
        os.close(master)
    return Run(proc.returncode, stdout, b"".join(chunks))


def assert_bar(result: Run, label: str, unit: str) -> None:
    """A bar was drawn on stderr: its label, a rate in its unit, and the time it took at the end."""
    assert result.code == 0, result.shown
    text = result.shown
    assert label in text, text
    assert re.search(rf"[\d,]+ {unit}/s", text), text
    assert re.search(r"\bin \d+:\d\d:\d\d", text), text  # the finished bar says how long it took
    assert b"\x1b" not in result.stdout, "the bar never reaches stdout"


def assert_no_bar(result: Run, label: str) -> None:
    assert result.code == 0, result.stderr
    assert b"\x1b" not in result.stderr and label not in result.stderr.decode(), result.stderr
    assert not re.search(r"\d [a-z]+/s\b", result.stderr.decode()) and b"\x1b" not in result.stdout


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, Run]:
    """The same sample built twice: once with stderr on a terminal (dir ``tty``), once in a pipe."""
    root = tmp_path_factory.mktemp("progress")
    runs = []
    for name, terminal in (("tty", True), ("pipe", False)):
        (root / name).mkdir()
        runs.append(run(root / name, "demo", "--size", "large", "--entries", str(ENTRIES), terminal=terminal))
    (root / "library").mkdir()
    shutil.copyfile(root / "pipe" / "grantex.db", root / "library" / "grantex.db")
    return root, runs[0], runs[1]


# ── the CLI ──────────────────────────────────────────────────────────────────


def test_sample_generation_draws_a_bar_on_a_terminal_and_nothing_in_a_pipe(
        sample: tuple[Path, Run, Run]) -> None:
    _, tty, pipe = sample
    assert_bar(tty, "building the sample", "entries")
    assert f"{ENTRIES}/{ENTRIES}" in tty.shown, "the bar ends at the total"
    assert re.search(r"\beta \d+:\d\d:\d\d", tty.shown), "an estimate while it runs"
    assert_no_bar(pipe, "building the sample")
    assert pipe.stderr == b""
    assert tty.stdout == pipe.stdout and tty.stdout.startswith(b"Sample written to grantex.db")


def test_the_short_demo_counts_its_steps(tmp_path: Path) -> None:
    assert_bar(run(tmp_path, "demo", terminal=True), "building the demo", "steps")


def test_audit_verify_draws_a_bar_and_prints_the_same_bytes_as_in_a_pipe(
        sample: tuple[Path, Run, Run]) -> None:
    root = sample[0]
    tty = run(root / "tty", "audit", "verify", terminal=True)
    assert_bar(tty, "verifying the audit chain", "entries")
    pipe = run(root / "tty", "audit", "verify", terminal=False)
    assert_no_bar(pipe, "verifying the audit chain")
    assert tty.stdout == pipe.stdout and f"{ENTRIES} entries intact".encode() in pipe.stdout
    as_json = run(root / "tty", "audit", "verify", "--json", terminal=True)
    assert_no_bar(as_json, "verifying the audit chain")
    assert as_json.stdout == run(root / "tty", "audit", "verify", "--json", terminal=False).stdout
    json.loads(as_json.stdout)


def test_export_and_verify_export_draw_bars_on_a_terminal_only(sample: tuple[Path, Run, Run]) -> None:
    cwd = sample[0] / "tty"
    assert_bar(run(cwd, "export", "out", terminal=True), "exporting", "entries")
    as_json = run(cwd, "export", "out", "--force", "--json", terminal=True)
    assert_no_bar(as_json, "exporting")
    assert json.loads(as_json.stdout)["files"]["audit_entries.jsonl"]["rows"] == ENTRIES

    tty = run(cwd, "verify-export", "out", terminal=True)
    assert_bar(tty, "verifying the export", "rows")
    pipe = run(cwd, "verify-export", "out", terminal=False)
    assert_no_bar(pipe, "verifying the export")
    assert tty.stdout == pipe.stdout and pipe.stdout.startswith(f"valid: {ENTRIES} audit entries".encode())
    as_json = run(cwd, "verify-export", "out", "--json", terminal=True)
    assert_no_bar(as_json, "verifying the export")
    assert as_json.stdout == run(cwd, "verify-export", "out", "--json", terminal=False).stdout


def test_parquet_export_draws_a_bar_on_a_terminal_only(sample: tuple[Path, Run, Run]) -> None:
    cwd = sample[0] / "tty"
    assert_bar(run(cwd, "export", "pq", "--format", "parquet", terminal=True), "exporting to parquet",
               "entries")
    pipe = run(cwd, "export", "pq", "--format", "parquet", "--force", terminal=False)
    assert_no_bar(pipe, "exporting to parquet")
    assert pipe.stdout.startswith(b"parquet export written to ") and pipe.stdout.count(b"\n") == 1


def test_anomaly_detection_draws_a_bar_on_a_terminal_only(sample: tuple[Path, Run, Run]) -> None:
    root = sample[0]
    assert_bar(run(root / "tty", "anomalies", "detect", terminal=True), "detecting anomalies", "entries")
    as_json = run(root / "pipe", "anomalies", "detect", "--json", terminal=True)
    assert_no_bar(as_json, "detecting anomalies")
    assert json.loads(as_json.stdout)["anomalies"]


# ── the library's callbacks ──────────────────────────────────────────────────


@dataclass
class Calls:
    """A progress callback that keeps every call and checks the contract when asked."""

    calls: list[tuple[int, int | None]] = field(default_factory=list)

    def __call__(self, done: int, total: int | None) -> None:
        self.calls.append((done, total))

    def check(self, total: int) -> None:
        assert self.calls, "the callback was never called"
        done = [d for d, _ in self.calls]
        assert done == sorted(done), f"done went back: {done}"
        assert {t for _, t in self.calls} == {total}, self.calls
        assert self.calls[-1] == (total, total), "the last call is done == total"
        assert len(self.calls) <= MOST_CALLS, f"{len(self.calls)} calls for {total} units: not throttled"


@pytest.fixture(scope="module")
def ledger_copy(sample: tuple[Path, Run, Run]) -> Path:
    """A copy of the sample, made before any command ran on it, for the library to read (and
    the detectors to write to)."""
    return sample[0] / "library" / "grantex.db"


def test_sample_generation_reports_the_entries_written(tmp_path: Path) -> None:
    from grantex_local.sample import generate

    calls = Calls()
    generate(tmp_path / "g.db", size="large", entries=1_500, months=1, progress=calls)
    calls.check(1_500)


def test_the_demo_reports_each_step(tmp_path: Path) -> None:
    from grantex_local.demo import DEMO_STEPS, run_demo

    calls = Calls()
    run_demo(tmp_path / "d.db", progress=calls)
    calls.check(DEMO_STEPS)
    assert [d for d, _ in calls.calls][:DEMO_STEPS] == list(range(1, DEMO_STEPS + 1)), "one call a step"


def test_load_and_run_all_report_rows_and_checks(ledger_copy: Path) -> None:
    from grantex_local.analysis import load, run_all
    from grantex_local.analysis.checks import CHECKS

    calls = Calls()
    ds = load(ledger_copy, progress=calls)
    calls.check(2 * len(ds.audit))  # each entry verified, then read
    assert len(ds.audit) == ENTRIES
    checks = Calls()
    results = run_all(ds, progress=checks)
    checks.check(len(CHECKS))
    assert len(results) == len(CHECKS)
    assert [d for d, _ in checks.calls][:len(CHECKS)] == list(range(1, len(CHECKS) + 1))


def test_export_verify_and_load_of_a_bundle_report_progress(ledger_copy: Path, tmp_path: Path) -> None:
    from grantex_local.analysis import load
    from grantex_local.export import export_bundle, verification_rows, verify_bundle

    written = Calls()
    with Ledger(ledger_copy, create=False) as ledger:
        manifest = export_bundle(ledger, tmp_path / "b", progress=written)
    written.check(ENTRIES)
    checked = Calls()
    summary = verify_bundle(tmp_path / "b", progress=checked)
    rows = verification_rows(manifest)
    assert rows is not None and rows > 2 * ENTRIES
    checked.check(rows)
    assert summary["entries"] == ENTRIES
    loaded = Calls()
    load(tmp_path / "b", progress=loaded)
    loaded.check(rows + ENTRIES)  # the verifier's rows, then the audit entries read


def test_parquet_export_and_load_report_progress(ledger_copy: Path, tmp_path: Path) -> None:
    from grantex_local.analysis import export_parquet, load

    written = Calls()
    with Ledger(ledger_copy, create=False) as ledger:
        export_parquet(ledger, tmp_path / "p", progress=written)
    written.check(ENTRIES)
    loaded = Calls()
    assert len(load(tmp_path / "p", progress=loaded).audit) == ENTRIES
    loaded.check(ENTRIES)  # each entry read and verified in one pass


def test_anomaly_detection_reports_progress(ledger_copy: Path) -> None:
    from grantex_local.analysis.detection import detect
    from grantex_local.developers import default_developer

    calls = Calls()
    with Ledger(ledger_copy, create=False) as ledger:
        result = detect(ledger, default_developer(ledger).id, progress=calls)
    calls.check(3 * ENTRIES)  # verified, read, judged
    assert result.anomalies


def test_a_tally_never_goes_back_never_passes_the_total_and_ends_there() -> None:
    calls = Calls()
    tally = Tally(calls, 1_000)
    for done in (5, 3, 10, 9, 400, 2_000):
        tally.reach(done)
    tally.finish()
    assert calls.calls == [(10, 1_000), (400, 1_000), (1_000, 1_000), (1_000, 1_000)]
    silent = Tally(None, 10)
    silent.advance(20)
    silent.finish()
    assert silent.done == 10


def test_the_notebook_line_shows_count_rate_and_what_is_left_then_the_time_taken() -> None:
    from grantex_local.analysis.notebook import progress_text

    running = progress_text("loading", 1_000, 4_000, 2.0, width=8)
    assert running == "loading [##      ] 1,000/4,000, 500/s, 6 s left"
    done = progress_text("loading", 4_000, 4_000, 8.0, width=8)
    assert done == "loading [########] 4,000/4,000, 500/s, in 8 s"
    assert progress_text("checks", 7, None, 0.0) == "checks 7, 0/s"


def test_bundle_sync_reports_the_entries_checked_and_draws_a_bar(tmp_path: Path) -> None:
    import asyncio

    gg = pytest.importorskip("grantex_gemma")
    from cli_helpers import ok
    from grantex_gemma._consent_bundle import _parse_bundle

    from grantex_local import Grantex, bundles

    count = 300
    with Ledger(tmp_path / "grantex.db") as ledger:
        agent = Grantex(ledger).agents.register(name="phone agent", scopes=["contacts:read"])
    made = tmp_path / "bundle.json"
    ok("bundles", "create", "--ledger", tmp_path / "grantex.db", "--agent", agent.id,
       "--principal", "user_bob", "--scope", "contacts:read", "--offline-ttl", "12h", "--out", made)
    bundle = _parse_bundle(json.loads(made.read_text()))

    async def device_log(path: Path) -> None:
        grant = await gg.create_offline_verifier(bundle.jwks_snapshot).verify(bundle.grant_token)
        log = gg.create_offline_audit_log(bundle.offline_audit_key, str(path))
        for n in range(count):
            await log.append("contacts.read", grant, "success", {"n": n})

    asyncio.run(device_log(tmp_path / "device.jsonl"))
    raw = [json.loads(line) for line in (tmp_path / "device.jsonl").read_text().splitlines()]
    shutil.copyfile(tmp_path / "grantex.db", tmp_path / "before.db")
    calls = Calls()
    with Ledger(tmp_path / "grantex.db", create=False) as ledger:
        outcome = bundles.sync(ledger, None, bundle.bundle_id, bundles.parse_entries(raw), progress=calls)
    assert outcome.accepted == count
    calls.check(count)

    (tmp_path / "cli").mkdir()
    shutil.copyfile(tmp_path / "before.db", tmp_path / "cli" / "grantex.db")
    args = ("bundles", "sync", str(tmp_path / "device.jsonl"), "--bundle", bundle.bundle_id)
    tty = run(tmp_path / "cli", *args, terminal=True)
    assert_bar(tty, "syncing the device log", "entries")
    again = run(tmp_path / "cli", *args, "--json", terminal=True)  # every entry a duplicate now
    assert_no_bar(again, "syncing the device log")
    assert json.loads(again.stdout)["duplicates"] == count
