"""Several processes on one ledger file: a code is consumed exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from grantex_local import Grantex

WORKER = textwrap.dedent("""
    import json, os, sys, time
    from grantex_local import Grantex, InvalidCode
    path, agent_id, codes_file, ready_dir, me = sys.argv[1:6]
    codes = json.load(open(codes_file))
    gx = Grantex(path, create=False)
    open(os.path.join(ready_dir, me), "w").close()
    while len(os.listdir(ready_dir)) < 2:   # start together
        time.sleep(0.001)
    results = {}
    for code in codes:
        try:
            results[code[:8]] = gx.tokens.exchange(code=code, agent_id=agent_id).grant_id
        except InvalidCode as exc:
            results[code[:8]] = "refused: " + exc.message
    print(json.dumps(results))
""")


def test_two_processes_exchanging_the_same_codes(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    with Grantex(path) as gx:
        agent = gx.agents.register(name="racer", scopes=["calendar:read"])
        codes = [gx.authorize(agent_id=agent.id, user_id=f"user_{i}", scopes=["calendar:read"]).code
                 for i in range(25)]
    codes_file = tmp_path / "codes.json"
    codes_file.write_text(json.dumps(codes))
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(path), agent.id, str(codes_file), str(ready),
                          name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    for code in codes:
        answers = [o[code[:8]] for o in outputs]
        winners = [a for a in answers if a.startswith("grnt_")]
        assert len(winners) == 1, answers
        assert any("already been used" in a for a in answers), answers
    with Grantex(path, create=False) as gx:
        grants = gx.grants.list().grants
        assert len(grants) == len(codes)
        assert sorted(g.id for g in grants) == sorted(
            a for o in outputs for a in o.values() if a.startswith("grnt_"))
