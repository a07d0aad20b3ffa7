"""Check 1, log integrity: the chain and checkpoints verify, and every chain's head is signed.

The verdict of the library's own verifier is recorded when the Dataset loads (``ds.integrity``);
this check only reads it and adds what the verifier cannot know: how far the latest signed
checkpoint reaches.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..frames import Dataset
from .base import CheckResult, _frame, _result


def check_integrity(ds: Dataset) -> CheckResult:
    """The chain and checkpoints verify (the library's verifier, recorded at load), and the
    head of every chain is covered by its latest signed checkpoint."""
    integrity = ds.integrity
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
    heads = ds.audit.groupby("developer_id")["seq"].agg(["max", "count"]) if len(ds.audit) else None
    latest = (
        ds.checkpoints.groupby("developer_id")["entry_count"].max() if len(ds.checkpoints) else pd.Series()
    )
    coverage: dict[str, Any] = {}
    if heads is not None:
        for developer_id, head in heads.iterrows():
            last = int(head["max"])
            covered = int(latest.get(developer_id, 0))
            coverage[str(developer_id)] = {
                "entries": int(head["count"]),
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
    entries = len(ds.audit)
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
