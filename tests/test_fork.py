"""Issuing after ``fork()``: the child gets its own signing pool instead of the parent's dead one.

The parent's signing threads do not exist in a forked child, so a pool inherited from the
parent would accept the signing job and never run it: the child's next issuance would wait
for ever. Each scenario therefore runs in its own interpreter under a timeout, so that a
regression fails within seconds instead of hanging the suite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

# The parent issues (so the pool exists and its threads run), then forks; the child opens its
# own ledger (an sqlite3 connection must not cross a fork), issues, and verifies what it got.
PRELUDE = textwrap.dedent("""
    import os, sys, threading
    from grantex_local import ExchangeTokenParams, Grantex, Ledger

    PATH = sys.argv[1]

    def issue(gx):
        agent = gx.agents.register(name="forked", scopes=["calendar:read"])
        auth = gx.authorize(agent_id=agent.id, user_id="alice", scopes=["calendar:read"])
        token = gx.tokens.exchange(ExchangeTokenParams(code=auth.code, agent_id=agent.id))
        assert gx.tokens.verify(token.grant_token).valid, "the new token does not verify"
        return token

    def child_issues():
        with Grantex(Ledger(PATH)) as gx:
            issue(gx)

    parent = Grantex(Ledger(PATH))
    issue(parent)  # the signing pool now exists, with live threads
    assert any(t.name.startswith("grantex-sign") for t in threading.enumerate())
""")

SCENARIOS = {
    "os.fork": """
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child_issues()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
    """,
    "multiprocessing fork": """
        import multiprocessing
        process = multiprocessing.get_context("fork").Process(target=child_issues)
        process.start()
        process.join()
        assert process.exitcode == 0, process.exitcode
    """,
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_forked_child_issues_tokens(tmp_path: Path, scenario: str) -> None:
    script = PRELUDE + textwrap.dedent(SCENARIOS[scenario]) + textwrap.dedent("""
        issue(parent)  # and the parent still issues after the fork
        parent.close()
        print("done")
    """)
    # A session of its own: on a timeout the hung child is killed with its parent, not orphaned.
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "grantex.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{scenario}: issuing after fork hung (the child inherited a dead signing pool)")
    assert proc.returncode == 0, stderr
    assert stdout.strip() == "done"
