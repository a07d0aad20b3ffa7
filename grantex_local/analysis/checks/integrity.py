"""Check 1, log integrity: the chain and checkpoints verify, and every chain's head is signed.

The verdict of the library's own verifier is recorded when the Dataset loads (``ds.integrity``);
this check only reads it and adds what the verifier cannot know: how far the latest signed
checkpoint reaches. The log itself is read once, by the engine: each chain's head seq and size
(:data:`HEADS`, a row per developer), so the check costs the same on a ten-million-entry export
as on a loaded ledger.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset
from .base import CheckResult, _frame, _result

HEADS = """
SELECT developer_id, MAX(seq) AS head, COUNT(*) AS entries
FROM audit
GROUP BY developer_id
ORDER BY developer_id ASC NULLS LAST
"""
"""Each chain's head seq and size; the rows without a developer count in the total only (as a
pandas GROUP BY drops them)."""


def check_integrity(ds: Dataset | EngineDataset) -> CheckResult:
    """The chain and checkpoints verify (the library's verifier, recorded at load), and the
    head of every chain is covered by its latest signed checkpoint."""
    with engine_dataset(ds) as eds:
        chains = eds.engine.sql(HEADS)
    integrity = ds.integrity
    entries = int(chains["entries"].sum())
    heads = chains.loc[chains["developer_id"].notna()].sort_values("developer_id", kind="stable")
    rows: list[dict[str, Any]] = []
    for found in integrity.errors:
        rows.append(
            {
                "seq": found.get("seq"),
                "developer_id": found.get("developerId"),
                "problem": found.get("reason") or found.get("kind"),
                "detail": found.get("message"),
            }
        )
    latest = (
        ds.checkpoints.groupby("developer_id")["entry_count"].max() if len(ds.checkpoints) else pd.Series()
    )
    coverage: dict[str, Any] = {}
    for developer_id, head, count in zip(heads["developer_id"], heads["head"], heads["entries"], strict=True):
        last = int(head)
        covered = int(latest.get(developer_id, 0))
        coverage[str(developer_id)] = {
            "entries": int(count),
            "headSeq": last,
            "checkpointSize": covered,
        }
        if covered < last:
            rows.append(
                {
                    "seq": covered + 1,
                    "developer_id": developer_id,
                    "problem": "head_not_checkpointed",
                    "detail": f"entries {covered + 1}..{last} are not covered by a signed checkpoint"
                    + (f" (the latest covers {covered})" if covered else " (none exists)"),
                }
            )
        elif covered > last:
            rows.append(
                {
                    "seq": last + 1,
                    "developer_id": developer_id,
                    "problem": "tail_deleted",
                    "detail": f"the latest checkpoint commits to {covered} entries, the log holds {last}",
                }
            )
    evidence = _frame(rows, ["seq", "developer_id", "problem", "detail"])
    if integrity.errors:
        located = [e for e in integrity.errors if e.get("seq") is not None]
        where = (
            f" from seq {located[0]['seq']} ({located[0].get('reason')}, developer "
            f"{located[0].get('developerId')})"
            if located
            else ""
        )
        summary = f"the log does not verify{where}: " + "; ".join(
            str(e.get("message")) for e in integrity.errors[:3]
        )
    elif len(evidence):
        summary = f"{entries} entries verify, but {evidence['detail'].iloc[0]}"
    else:
        summary = (
            f"{entries} entries in {len(integrity.chains)} chain(s) verify with {integrity.method}; "
            "every head is covered by a signed checkpoint"
        )
    if integrity.warning:
        summary += f" (note: {integrity.warning})"
    metrics: dict[str, Any] = {
        "method": integrity.method,
        "entries": entries,
        "chains": list(integrity.chains),
        "checkpoints_checked": integrity.checkpoints_checked,
        "key_source": integrity.key_source,
        "coverage": coverage,
        "verified": integrity.valid,
    }
    return _result(ds, 1, integrity.valid and evidence.empty, summary, evidence, metrics)
