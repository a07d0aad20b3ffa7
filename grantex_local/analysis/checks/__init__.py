"""The auditor's checks over a :class:`~grantex_local.analysis.Dataset`.

Each check returns a :class:`CheckResult`: pass or fail, a one-line summary, the clauses it
serves, metrics, and an evidence DataFrame whose ``seq`` column cites audit entries (the seq of
the entry in its developer's chain; ``developer_id`` is beside it; at most
:data:`~.base.EVIDENCE_LIMIT` rows, ``evidence_rows`` counting them all). Every check that reads
the log is one SQL definition run by an engine (:mod:`..engines`: DuckDB by default, Spark), over
a loaded Dataset's frames or over a parquet export left on disk, so a log larger than memory is
judged the same way as the committed sample.

What is judged: the agents' own actions (entries logged with ``audit.log``; actions not starting
with ``grantex.``). Lifecycle events (``grantex.*``) are the evidence they are judged against:
``grantex.grant.revoked`` (one per grant revoked, metadata ``cause``), ``grantex.grant.issued`` /
``delegated``, ``grantex.consent.approved`` / ``denied``, ``grantex.agent.suspended``, ...
An action is *accepted* unless its status is ``blocked`` (a ``failure`` was still attempted
under the grant; a ``blocked`` one was refused, which is oversight working).

Metadata conventions the checks read:

- ``metadata["scope"]``: the scope the action used. It must be covered by one of the grant's
  scopes under the coverage rule of PROTOCOL §4 (:func:`grantex_local.scopes.uncovered`).
- ``metadata["amount"]``: a number (numeric text is accepted) that must be at most N of the
  grant's matching ``max_N`` constraint: the grant scope equal to the metadata scope when that
  carries ``max_N``, else the largest N among the grant's ``max_N`` scopes with the metadata
  scope's ``resource:action``. A grant scope on that resource:action with no constraint allows
  any amount; with no metadata scope, or no such grant scope, the amount is not judged.

Consent (check 2): a root grant's consent record is the authorization request it was exchanged
from. ``decided_by`` tells who decided: ``sandbox`` (no one: a sandbox developer's automatic
approval), ``policy:<id>`` (an ``auto_approve`` policy, consent given in advance by a rule),
anything else is a person. By default a person or a policy counts as consent, sandbox does not.

Each check is a module of this package, named for what it checks; what they share (the clause
map :data:`CHECKS`, :class:`CheckResult`, the helpers) is in :mod:`.base`, below all of them.
This module is the registry: it names every check and runs them all (:func:`run_all`).

Which check serves which clause (:data:`CHECKS` holds the same):

====  ==========================  ==================================================================
 id   check                       clauses
====  ==========================  ==================================================================
  1   log integrity               EU AI Act Art. 12(1) (logs over the lifetime), Art. 19 (logs
                                  kept, intact); SOC 2 CC7.2 (monitoring, tamper evidence)
  2   provenance and consent      EU AI Act Art. 12(2) (traceability), Art. 14 (a human decided);
                                  SOC 2 CC6.1, CC6.2 (access authorised before it is used)
  3   scope and amount            EU AI Act Art. 12(2); SOC 2 CC6.1, CC6.3 (least privilege)
  4   grant window                EU AI Act Art. 12(2); SOC 2 CC6.1, CC6.2
  5   no action after revocation  EU AI Act Art. 14(4)(e) (a stop that works); SOC 2 CC6.2, CC6.3
  6   revocation latency          EU AI Act Art. 14(4)(e); SOC 2 CC6.2, CC7.4 (response)
  7   delegation                  EU AI Act Art. 12(2); SOC 2 CC6.3
  8   grant hygiene               SOC 2 CC6.2, CC6.3 (access reviewed, removed when unused)
  9   oversight evidence          EU AI Act Art. 14(4) (monitor, intervene); SOC 2 CC7.3, CC7.4
 10   retention                   EU AI Act Art. 19(1) (kept at least six months), Art. 12(1);
                                  SOC 2 CC7.2
 11   anomalies                   EU AI Act Art. 14(4)(a) (detect anomalies), Art. 12(2)(a);
                                  SOC 2 CC7.2, CC7.3
 12   offline logs                EU AI Act Art. 12(1) (logs over the lifetime, also offline),
                                  Art. 19 (logs kept: a consent bundle's log came home); SOC 2 CC7.2
====  ==========================  ==================================================================

The findings summary is :func:`grantex_local.analysis.findings`.
"""

from __future__ import annotations

from typing import Any

from ...progress import Progress, Tally
from ..engines import EngineDataset, engine_dataset
from ..frames import Dataset
from .anomalies import detect_anomalies
from .base import (
    ANOMALY_TYPES,
    ART12,
    ART14,
    ART19,
    CHECKS,
    SEVERITIES,
    CheckResult,
    consent_kind,
    duration,
)
from .delegation import check_delegation
from .hygiene import check_grant_hygiene
from .integrity import check_integrity
from .offline import check_offline_logs
from .oversight import HUMAN_INTERVENTIONS, interventions, oversight_evidence
from .provenance import check_provenance, grant_consent
from .retention import check_retention
from .revocation import check_after_revocation, revocation_latency, revocation_points
from .scope import check_scope
from .window import check_grant_window

__all__ = [
    "ANOMALY_TYPES",
    "ART12",
    "ART14",
    "ART19",
    "CHECKS",
    "HUMAN_INTERVENTIONS",
    "SEVERITIES",
    "CheckResult",
    "check_after_revocation",
    "check_delegation",
    "check_grant_hygiene",
    "check_grant_window",
    "check_integrity",
    "check_offline_logs",
    "check_provenance",
    "check_retention",
    "check_scope",
    "consent_kind",
    "detect_anomalies",
    "duration",
    "grant_consent",
    "interventions",
    "oversight_evidence",
    "revocation_latency",
    "revocation_points",
    "run_all",
]


def run_all(
    ds: Dataset | EngineDataset,
    *,
    review_start: Any = None,
    review_end: Any = None,
    max_ttl: Any = "24h",
    unused_days: float = 30,
    cache_window: Any = "0s",
    off_hours: tuple[int, int] = (22, 6),
    high_frequency_per_minute: int = 30,
    max_sync_gap: Any = "7d",
    engine: Any = None,
    progress: Progress | None = None,
) -> list[CheckResult]:
    """Checks 1 to 12 in order. ``review_end`` (else ``ds.as_of``) is also the instant grant
    hygiene and offline logs are judged at. ``progress`` is told the checks done, of 12 (the
    anomaly detectors run first, since check 9 cites what they find).

    ``engine`` runs the checks' SQL on DuckDB (the default), Spark (``"spark"`` or a SparkSession)
    or an open :class:`~grantex_local.analysis.engines.Engine`; a loaded pandas ``ds`` is put into
    it once for all twelve. A dataset loaded with ``load(..., engine=)`` runs where it lives."""
    tally = Tally(progress, len(CHECKS), step=1)

    def counted(result: CheckResult) -> CheckResult:
        tally.advance()
        return result

    with engine_dataset(ds, engine) as eds:
        anomalies = counted(
            detect_anomalies(eds, off_hours=off_hours, high_frequency_per_minute=high_frequency_per_minute)
        )
        results = [  # evaluated in order: each check is counted as it ends
            counted(check_integrity(eds)),
            counted(check_provenance(eds)),
            counted(check_scope(eds)),
            counted(check_grant_window(eds, cache_window=cache_window)),
            counted(check_after_revocation(eds, cache_window=cache_window)),
            counted(revocation_latency(eds, cache_window=cache_window)),
            counted(check_delegation(eds)),
            counted(check_grant_hygiene(eds, max_ttl=max_ttl, unused_days=unused_days, as_of=review_end)),
            counted(oversight_evidence(  # every anomaly check 11 found, as SQL it already registered
                eds, thresholds={"off_hours": off_hours,
                                 "high_frequency_per_minute": high_frequency_per_minute},
            )),
            counted(check_retention(eds, review_start=review_start, review_end=review_end)),
            anomalies,
            counted(check_offline_logs(eds, max_sync_gap=max_sync_gap, as_of=review_end)),
        ]
    tally.finish()
    return results
