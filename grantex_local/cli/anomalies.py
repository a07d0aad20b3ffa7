"""``anomalies``: run the detectors, list what they found, acknowledge it, and the response policy.

Detection is the same function the server's ``POST /v1/anomalies/detect`` runs
(:func:`grantex_local.analysis.detection.detect`); it needs pandas, imported only by ``detect``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from . import (
    GrantexGroup,
    LibraryChoice,
    developer_option,
    developer_or_default,
    echo_fields,
    echo_table,
    emit,
    json_option,
    library,
    with_ledger,
)

if TYPE_CHECKING:
    from ..founding import Ledger


@click.group("anomalies", cls=GrantexGroup)
def anomalies_group() -> None:
    """Anomalies the detectors found in the agents' actions, and their acknowledgement."""


def _rows(found: Any) -> list[list[object]]:
    return [[a.id, a.severity, a.type, a.agent_id, a.detected_at, a.acknowledged_at or "open",
             a.description] for a in found]


_HEADERS = ["ID", "SEVERITY", "TYPE", "AGENT", "DETECTED", "ACKNOWLEDGED", "DESCRIPTION"]


@anomalies_group.command("detect")
@developer_option
@json_option
@with_ledger
def anomalies_detect(ledger: Ledger, developer_id: str | None, as_json: bool) -> None:
    """Run the detectors over the file's audit log; store and show what is new.

    Anomalies found before are not stored again (an acknowledged one stays acknowledged).
    Under the revoke_agent_grants policy, a new high or critical anomaly revokes its agent's
    grants and what was delegated from them.
    """
    from ..analysis.detection import detect
    from .progress import progress_bar

    developer = developer_or_default(ledger, developer_id)
    with progress_bar("detecting anomalies", as_json=as_json) as bar:
        result = detect(ledger, developer, progress=bar)

    def human() -> None:
        echo_table(_HEADERS, _rows(result.anomalies), "no new anomalies")
        click.echo(f"{len(result.anomalies)} new, {result.open_total} open (policy {result.response_mode})")
        if result.revoked_grants:
            click.echo(f"revoked {len(result.revoked_grants)} grant(s): {' '.join(result.revoked_grants)}")

    emit(as_json, result.to_dict(), human)


@anomalies_group.command("list")
@click.option("--open", "only_open", is_flag=True, help="Only anomalies nobody acknowledged yet.")
@developer_option
@json_option
@with_ledger
def anomalies_list(ledger: Ledger, only_open: bool, developer_id: str | None, as_json: bool) -> None:
    """Stored anomalies, newest first."""
    from .. import anomalies

    found = anomalies.list_anomalies(ledger, developer_or_default(ledger, developer_id),
                                     unacknowledged=only_open)
    emit(as_json, {"anomalies": [a.to_dict() for a in found], "total": len(found)},
         lambda: echo_table(_HEADERS, _rows(found), "no open anomalies" if only_open else "no anomalies"))


@anomalies_group.command("ack")
@click.argument("anomaly_id")
@developer_option
@json_option
@with_ledger
def anomalies_ack(ledger: Ledger, anomaly_id: str, developer_id: str | None, as_json: bool) -> None:
    """Acknowledge ANOMALY_ID (of any developer in the file unless --developer); again is a no-op."""
    from .. import anomalies

    found = anomalies.acknowledge(ledger, developer_id, anomaly_id, by="cli")
    emit(as_json, found.to_dict(), lambda: echo_fields([
        ("id", found.id), ("type", found.type), ("severity", found.severity),
        ("acknowledged", found.acknowledged_at)]))


@anomalies_group.command("policy")
@click.argument("mode", required=False, type=LibraryChoice(lambda: library("anomalies").MODES))
@developer_option
@json_option
@with_ledger
def anomalies_policy(ledger: Ledger, mode: str | None, developer_id: str | None, as_json: bool) -> None:
    """Show the response policy, or set it to MODE (alert_only or revoke_agent_grants)."""
    from .. import anomalies

    developer = developer_or_default(ledger, developer_id)
    if mode:
        current = anomalies.set_policy(ledger, developer, mode)
    else:
        current = anomalies.get_policy(ledger, developer)
    emit(as_json, {"mode": current}, lambda: click.echo(current))
