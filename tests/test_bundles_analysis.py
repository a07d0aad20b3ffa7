"""Offline-origin entries in the analysis frames, and check 12 (offline logs), on a ledger, an
export bundle and a parquet export.

The ledgers are built the way a sync leaves them: ``grantex.bundle.created`` / ``synced``
lifecycle events written through the library's own appender (``audit.trail.record``), and each
synced offline entry as an ordinary audit entry whose metadata carries ``offline`` (issue 14).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import grant_for

from grantex_local import Grantex, Ledger
from grantex_local.analysis import check_offline_logs, export_parquet, load, run_all
from grantex_local.audit import trail
from grantex_local.clock import iso
from grantex_local.export import export_bundle

T0 = 1_772_323_200.0  # 2026-03-01T00:00:00Z
H = 3600.0
OFFLINE = ["offline_bundle_id", "offline_seq", "device_timestamp", "synced_at", "after_revocation"]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Built:
    path: Path
    created_seq: dict[str, int]
    ordinary_seq: int


def _record(gx: Grantex, action: str, grant: Any, metadata: dict[str, Any]) -> int:
    with gx.ledger.write() as conn:
        entry = trail.record(gx.ledger, conn, gx.developer_id, action, agent_id=grant.agent_id,
                             grant_id=grant.id, principal_id=grant.principal_id, metadata=metadata)
    return entry.seq


def _create(gx: Grantex, grant: Any, bundle_id: str, ttl: float) -> int:
    expires = iso(gx.ledger.now() + ttl)
    return _record(gx, "grantex.bundle.created", grant,
                   {"bundleId": bundle_id, "grantId": grant.id, "offlineExpiresAt": expires})


def _sync(gx: Grantex, grant: Any, bundle_id: str, device_times: list[float], *, start: int = 1,
          after: int | None = None) -> None:
    """What a sync leaves behind: the device's entries with their origin, then the sync event."""
    synced = iso(gx.ledger.now())
    for n, device in enumerate(device_times, start=start):
        origin = {"bundleId": bundle_id, "offlineSeq": n, "deviceTimestamp": iso(device),
                  "signature": "c2ln", "hash": f"{n:064x}", "syncedAt": synced,
                  "afterRevocation": n == after}
        gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="contacts.read",
                     metadata={"offline": origin, "scope": "contacts:read"})
    _record(gx, "grantex.bundle.synced", grant, {"bundleId": bundle_id, "accepted": len(device_times)})


def build(path: Path, *, with_lost: bool) -> Built:
    """Bundle A: 3 entries synced 5h in (device at 1h, 2h, 3h: gaps 4h, 3h, 2h), heard again after
    its 72h window. Bundle C: 30-day window, one entry synced 1h in. Bundle B (``with_lost``):
    72h window, never synced."""
    clock = Clock()
    with Ledger(path, clock=clock) as ledger:
        gx = Grantex(ledger)
        grant = gx.grants.get(grant_for(gx, ["contacts:read"], agent_name="phone-agent").grant_id)
        ordinary = gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="online.thing")
        seqs = {"cb_A": _create(gx, grant, "cb_A", 72 * H), "cb_C": _create(gx, grant, "cb_C", 30 * 24 * H)}
        clock.now = T0 + 600
        if with_lost:
            seqs["cb_B"] = _create(gx, grant, "cb_B", 72 * H)
        clock.now = T0 + 1 * H
        _sync(gx, grant, "cb_C", [T0 + 0.5 * H])
        clock.now = T0 + 5 * H
        _sync(gx, grant, "cb_A", [T0 + 1 * H, T0 + 2 * H, T0 + 3 * H], after=3)
        clock.now = T0 + 73 * H
        _sync(gx, grant, "cb_A", [])
        gx.audit.checkpoint()
    return Built(path, seqs, ordinary.seq)


@pytest.fixture(scope="module")
def lost(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Path, Path]:
    root = tmp_path_factory.mktemp("offline")
    built = build(root / "lost.db", with_lost=True)
    with Ledger(built.path, create=False) as ledger:
        export_bundle(ledger, root / "bundle")
        export_parquet(ledger, root / "parquet")
    return built, root / "bundle", root / "parquet"


def _at(hours: float) -> pd.Timestamp:
    return pd.Timestamp(T0 + hours * H, unit="s", tz="UTC")


def test_offline_origin_is_a_column_alike_for_ledger_bundle_and_parquet(
        lost: tuple[Built, Path, Path]) -> None:
    built, bundle, parquet = lost
    loaded = [load(source) for source in (built.path, bundle, parquet)]
    assert [ds.kind for ds in loaded] == ["ledger", "bundle", "parquet"]
    assert all(ds.integrity.valid for ds in loaded)
    first = loaded[0].audit.sort_values(["developer_id", "seq"]).reset_index(drop=True)
    assert str(first["offline_seq"].dtype) == "Int64" and str(first["after_revocation"].dtype) == "boolean"
    assert str(first["device_timestamp"].dtype) == str(first["synced_at"].dtype) == "datetime64[ns, UTC]"
    for other in loaded[1:]:
        frame = other.audit.sort_values(["developer_id", "seq"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(first[["seq", *OFFLINE]], frame[["seq", *OFFLINE]], obj=other.kind)
    offline = first.loc[first["offline_bundle_id"] == "cb_A"]
    assert offline["offline_seq"].tolist() == [1, 2, 3]
    assert offline["device_timestamp"].tolist() == [_at(1), _at(2), _at(3)]
    assert (offline["synced_at"] == _at(5)).all()
    assert offline["after_revocation"].tolist() == [False, False, True]
    ordinary = first.loc[first["seq"] == built.ordinary_seq].iloc[0]
    assert pd.isna(ordinary["offline_bundle_id"]) and pd.isna(ordinary["offline_seq"])
    assert pd.isna(ordinary["device_timestamp"]) and pd.isna(ordinary["after_revocation"])
    lifecycle = first.loc[first["action"].str.startswith("grantex.")]
    assert lifecycle["offline_bundle_id"].isna().all()


def test_an_old_parquet_export_without_the_columns_derives_them(lost: tuple[Built, Path, Path],
                                                              tmp_path: Path) -> None:
    _, _, parquet = lost
    ds = load(parquet)
    from grantex_local.analysis import parquet as pq_module

    frames, *_ = pq_module.load_parquet(_version_1_without_offline(parquet, tmp_path), None)
    pd.testing.assert_frame_equal(frames["audit"][OFFLINE], ds.audit[OFFLINE])


def _version_1_without_offline(source: Path, scratch: Path) -> Path:
    """A copy of a parquet export in the version 1 layout (one audit.parquet, as written before
    the offline columns were stored): the parts in chain order, with their developer, as one file."""
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    target = scratch / "export"
    shutil.copytree(source, target)
    shutil.rmtree(target / "audit")
    manifest = json.loads((source / "manifest.json").read_text())
    parts = sorted((f["developerId"], f["firstSeq"], name) for name, f in manifest["files"].items()
                   if name.startswith("audit/"))
    tables = []
    for developer_id, _, name in parts:
        table = pq.read_table(source / name).drop_columns(OFFLINE)
        tables.append(table.append_column("developer_id", pa.array([developer_id] * table.num_rows)))
    pq.write_table(pa.concat_tables(tables), target / "audit.parquet")
    manifest["version"] = 1
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize("which", [0, 1, 2], ids=["ledger", "bundle", "parquet"])
def test_the_check_fails_naming_the_bundle_whose_log_never_came_back(lost: tuple[Built, Path, Path],
                                                                     which: int) -> None:
    built = lost[0]
    result = check_offline_logs(load(lost[which]), as_of=_at(96))
    assert result.id == 12 and not result.passed
    assert "cb_B" in result.summary
    failing = result.evidence.loc[result.evidence["fails"].astype(bool)]
    assert failing["bundle_id"].tolist() == ["cb_B"] and failing["problem"].tolist() == ["never_synced"]
    assert result.cited_seqs() == sorted(built.created_seq.values())
    by_bundle = result.evidence.set_index("bundle_id")
    assert by_bundle.loc["cb_B", "seq"] == built.created_seq["cb_B"]
    assert by_bundle.loc["cb_B", "synced_entries"] == 0 and pd.isna(by_bundle.loc["cb_B", "last_sync_at"])
    assert result.metrics["problems"] == {"never_synced": 1}


def test_the_gap_between_device_time_and_sync(lost: tuple[Built, Path, Path]) -> None:
    result = check_offline_logs(load(lost[0]), as_of=_at(96))
    by_bundle = result.evidence.set_index("bundle_id")
    a = by_bundle.loc["cb_A"]
    assert a["gap_median_seconds"] == 3 * H and a["gap_max_seconds"] == 4 * H
    assert a["synced_entries"] == 3 and a["after_revocation"] == 1
    assert a["last_sync_at"] == _at(73) and pd.isna(a["problem"])
    assert by_bundle.loc["cb_C", "gap_max_seconds"] == 0.5 * H
    assert result.metrics["device_to_sync"]["max_seconds"] == 4 * H
    assert result.metrics["offline_entries"] == 4 and result.metrics["after_revocation_entries"] == 1


def test_a_bundle_unheard_of_too_long_while_it_could_still_log_fails(lost: tuple[Built, Path, Path]) -> None:
    result = check_offline_logs(load(lost[0]), as_of=_at(9 * 24))
    failing = result.evidence.loc[result.evidence["fails"].astype(bool)].set_index("bundle_id")["problem"]
    assert failing.to_dict() == {"cb_B": "never_synced", "cb_C": "sync_overdue"}  # A synced after its window
    relaxed = check_offline_logs(load(lost[0]), as_of=_at(9 * 24), max_sync_gap="10d")
    assert pd.isna(relaxed.evidence.set_index("bundle_id").loc["cb_C", "problem"])


def test_the_check_passes_when_every_bundle_synced(tmp_path: Path) -> None:
    built = build(tmp_path / "clean.db", with_lost=False)
    ds = load(built.path)
    result = check_offline_logs(ds, as_of=_at(96))
    assert result.passed, result.summary
    assert sorted(result.evidence["bundle_id"]) == ["cb_A", "cb_C"]
    results = run_all(ds, review_end=_at(96))
    assert [r.id for r in results][-1] == 12 and results[-1].passed


def test_a_bundle_inside_its_window_awaits_and_an_unknown_bundle_fails(tmp_path: Path) -> None:
    built = build(tmp_path / "lost.db", with_lost=True)
    early = check_offline_logs(load(built.path), as_of=_at(24))
    assert early.passed, early.summary
    assert early.evidence.set_index("bundle_id").loc["cb_B", "problem"] == "awaiting_sync"
    with Ledger(built.path) as ledger:
        gx = Grantex(ledger)
        grant = gx.grants.list().grants[0]
        gx.audit.log(agent_id=grant.agent_id, grant_id=grant.id, action="contacts.read",
                     metadata={"offline": {"bundleId": "cb_X", "offlineSeq": 1,
                                           "deviceTimestamp": "2026-03-01T00:00:00Z"}})
    result = check_offline_logs(load(built.path), as_of=_at(24))
    assert not result.passed
    assert result.evidence.set_index("bundle_id").loc["cb_X", "problem"] == "unknown_bundle"


def test_no_bundles_passes(tmp_path: Path) -> None:
    Grantex(tmp_path / "new.db").close()
    result = check_offline_logs(load(tmp_path / "new.db"))
    assert result.passed and result.evidence.empty and result.summary == "no consent bundles were issued"


def test_a_real_sync_with_the_gemma_package_shows_in_the_frame_and_the_check(tmp_path: Path) -> None:
    """The library's own create and sync, the device log written by grantex-gemma: the metadata
    keys this module relies on are the ones the sync really writes."""
    import asyncio
    import json

    gg = pytest.importorskip("grantex_gemma")
    from grantex_gemma._consent_bundle import _parse_bundle

    from grantex_local import bundles

    path = tmp_path / "grantex.db"
    with Ledger(path) as ledger:
        gx = Grantex(ledger)
        agent = gx.agents.register(name="phone-agent", scopes=["contacts:read"])
        made = bundles.create(ledger, gx.developer_id, agent_id=agent.id, principal_id="user_alice",
                              scopes=["contacts:read"], offline_ttl="12h")
        lost = bundles.create(ledger, gx.developer_id, agent_id=agent.id, principal_id="user_bob",
                              scopes=["contacts:read"], offline_ttl="1h")
        bundle = _parse_bundle(made)
        log_path = tmp_path / "device.jsonl"

        async def device() -> None:
            grant = await gg.create_offline_verifier(bundle.jwks_snapshot).verify(bundle.grant_token)
            log = gg.create_offline_audit_log(bundle.offline_audit_key, str(log_path))
            for i in range(4):
                await log.append("contacts.read", grant, "success", {"n": i})

        asyncio.run(device())
        lines = [json.loads(line) for line in log_path.read_text().splitlines()]
        outcome = bundles.sync(ledger, gx.developer_id, made["bundleId"], bundles.parse_entries(lines))
        assert outcome.accepted == 4
    ds = load(path)
    offline = ds.audit.loc[ds.audit["offline_bundle_id"] == made["bundleId"]]
    assert offline["offline_seq"].tolist() == [1, 2, 3, 4]
    assert offline["device_timestamp"].notna().all() and offline["synced_at"].notna().all()
    assert not offline["after_revocation"].any()
    late = pd.Timestamp(made["offlineExpiresAt"]) + pd.Timedelta(hours=1)
    result = check_offline_logs(ds, as_of=late)
    by_bundle = result.evidence.set_index("bundle_id")
    assert by_bundle.loc[made["bundleId"], "synced_entries"] == 4
    assert by_bundle.loc[made["bundleId"], "gap_max_seconds"] >= 0
    assert not result.passed and by_bundle.loc[lost["bundleId"], "problem"] == "never_synced"
    assert pd.isna(by_bundle.loc[made["bundleId"], "problem"])
