"""CI runs the worked example's own suite (examples/travel_agent), as its users would run it.

Why a subprocess rather than adding the example to ``testpaths``: the example is a separate
project with its own rootdir and pytest settings (``pythonpath`` for its ``travel_agent``
package), and the point is that it passes with only grantex-local's plugin, loaded through the
``pytest11`` entry point, and the official packages. Collected into this run it would share our
rootdir, ``addopts`` and ``sys.path`` (``helpers``, ``cli_helpers``, a second rootless
``conftest``), so a fixture or import leaking from ``tests/`` could make it pass here and fail
for a user. A fresh interpreter in the example's directory sees exactly what a user's run sees.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "travel_agent"
EXPECTED = {
    "test_the_agent_refuses_when_its_grant_is_revoked",
    "test_a_sub_agent_cannot_exceed_max_500",
    "test_every_booking_is_in_the_audit_trail",
    "test_an_expired_token_is_refused",
}


def test_the_travel_agent_example_suite_passes() -> None:
    # An xdist worker's or an outer test's variables must not steer the inner run.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "GRANTEX_", "PYTHONPATH"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"the example suite failed:\n{output[-6000:]}"
    passed = set(re.findall(r"^PASSED tests/test_booking\.py::(\w+)", done.stdout, flags=re.M))
    assert EXPECTED <= passed, f"not run or not passed: {sorted(EXPECTED - passed)}\n{output[-3000:]}"
    assert not re.search(r"\b\d+ (failed|error|errors|skipped)\b", done.stdout), output[-3000:]
