"""The tidy frames every source ends in: their schema, the :class:`Dataset` they make up, and the
pieces the readers share to build them.

Why a module of its own: the three readers (:mod:`.sources` for a ledger file and an export
bundle, :mod:`.parquet` for a parquet export) and the entry point :func:`.load.load` all stand on
these pieces, and the checks read only the :class:`Dataset`; kept here, below all of them, the
readers never need the entry point that chooses between them, so the imports form a tree.

Memory: the audit table is the only large one. It is read once, in chunks,
and each chunk is turned into Arrow/NumPy column pieces at once; the rows of
a chunk are dropped before the next is read, so only one copy of the table
(the frame) exists when loading ends.
"""

from __future__ import annotations

import gc
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..text import escape_surrogates

LIFECYCLE_PREFIX = "grantex."
CHUNK_ROWS = 50_000
TIME = "datetime64[ns, UTC]"
PARQUET_FORMAT = "grantex-local-parquet"
BUNDLE_FORMAT = "grantex-local-export"

Kind = str
"""Column kinds: ``str`` text, ``int`` whole numbers (nullable ``Int64`` where missing values are
possible), ``nint`` whole numbers always as nullable ``Int64``, ``bool``, ``nbool`` a nullable
``boolean`` (missing where the question does not apply), ``time`` UTC instants, ``json`` any JSON
value kept as a Python object."""

SCHEMAS: dict[str, tuple[tuple[str, Kind], ...]] = {
    "developers": (
        ("developer_id", "str"),
        ("name", "str"),
        ("sandbox", "bool"),
        ("is_default", "bool"),
        ("created_at", "time"),
    ),
    "agents": (
        ("agent_id", "str"),
        ("did", "str"),
        ("developer_id", "str"),
        ("name", "str"),
        ("description", "str"),
        ("scopes", "json"),
        ("status", "str"),
        ("redirect_uris", "json"),
        ("created_at", "time"),
        ("updated_at", "time"),
    ),
    "grants": (
        ("grant_id", "str"),
        ("developer_id", "str"),
        ("agent_id", "str"),
        ("agent_did", "str"),
        ("principal_id", "str"),
        ("scopes", "json"),
        ("issued_at", "time"),
        ("expires_at", "time"),
        ("revoked_at", "time"),
        ("parent_grant_id", "str"),
        ("delegation_depth", "int"),
        ("audience", "str"),
    ),
    "tokens": (
        ("jti", "str"),
        ("grant_id", "str"),
        ("kid", "str"),
        ("issued_at", "time"),
        ("expires_at", "time"),
        ("revoked_at", "time"),
        ("refresh_used_at", "time"),
    ),
    "auth_requests": (
        ("auth_request_id", "str"),
        ("developer_id", "str"),
        ("agent_id", "str"),
        ("principal_id", "str"),
        ("scopes", "json"),
        ("expires_in", "str"),
        ("status", "str"),
        ("created_at", "time"),
        ("expires_at", "time"),
        ("decided_at", "time"),
        ("decided_by", "str"),
        ("policy_id", "str"),
        ("grant_id", "str"),
        ("redirect_uri", "str"),
        ("state", "str"),
        ("audience", "str"),
    ),
    "policies": (
        ("policy_id", "str"),
        ("developer_id", "str"),
        ("name", "str"),
        ("effect", "str"),
        ("priority", "int"),
        ("agent_id", "str"),
        ("principal_id", "str"),
        ("scopes", "json"),
        ("time_window", "json"),
        ("created_at", "time"),
        ("updated_at", "time"),
    ),
    "audit": (
        ("seq", "int"),
        ("entry_id", "str"),
        ("developer_id", "str"),
        ("agent_id", "str"),
        ("agent_did", "str"),
        ("grant_id", "str"),
        ("principal_id", "str"),
        ("action", "str"),
        ("status", "str"),
        ("timestamp", "time"),
        ("hash", "str"),
        ("prev_hash", "str"),
        ("metadata", "json"),
        ("scope", "str"),
        ("amount", "float"),
        ("offline_bundle_id", "str"),
        ("offline_seq", "nint"),
        ("device_timestamp", "time"),
        ("synced_at", "time"),
        ("after_revocation", "nbool"),
    ),
    "checkpoints": (
        ("checkpoint_id", "str"),
        ("developer_id", "str"),
        ("entry_count", "int"),
        ("root_hash", "str"),
        ("head_entry_id", "str"),
        ("head_hash", "str"),
        ("head_timestamp", "time"),
        ("timestamp", "time"),
        ("signed_checkpoint", "str"),
    ),
}
"""Every frame of a :class:`Dataset` and its columns, in order (before the derived grant columns)."""

GRANT_DERIVED = ("auth_request_id", "root_grant_id", "depth", "status")
"""Columns added to ``grants`` from the other frames: the consent record (the auth request the
grant was exchanged from), the root of its delegation path and the depth counted along the parent
links, and the status at ``as_of``."""

AUDIT_STORED = tuple(name for name, _ in SCHEMAS["audit"][:13])
"""Audit columns read from the entry itself (``scope``, ``amount`` and the offline-origin columns
are flattened from metadata)."""

OFFLINE_COLUMNS = ("offline_bundle_id", "offline_seq", "device_timestamp", "synced_at", "after_revocation")
"""Where an entry synced from a device's offline log came from (``metadata["offline"]``: the
consent bundle, the device's own seq and clock, when it was synced, whether the device acted
after its grant was revoked); missing for every entry logged online."""
OFFLINE_KEYS = {
    "offline_bundle_id": "bundleId",
    "offline_seq": "offlineSeq",
    "device_timestamp": "deviceTimestamp",
    "synced_at": "syncedAt",
    "after_revocation": "afterRevocation",
}
"""Frame column → key of ``metadata["offline"]``."""

TABLES = tuple(SCHEMAS)


# ── the result ───────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Integrity:
    """What the library's verifier said about the audit chains, recorded rather than raised.

    ``errors`` holds one dict per problem: ``kind`` (``ChainBroken``, ``ExportInvalid``,
    ``CheckpointInvalid``), ``developerId``, ``seq`` (the first bad entry, when known), ``reason``
    and ``message``. ``chains`` are the verifier's per-chain reports (``ChainReport.to_dict``).
    """

    valid: bool
    method: str
    chains: tuple[dict[str, Any], ...] = ()
    errors: tuple[dict[str, Any], ...] = ()
    key_source: str | None = None
    warning: str | None = None
    checkpoints_checked: int = 0

    @property
    def error(self) -> dict[str, Any] | None:
        """The first problem found, or None."""
        return self.errors[0] if self.errors else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "method": self.method,
            "chains": list(self.chains),
            "errors": list(self.errors),
            "keySource": self.key_source,
            "warning": self.warning,
            "checkpointsChecked": self.checkpoints_checked,
        }


@dataclass
class Dataset:
    """Every table of a ledger as DataFrames, plus where it came from and whether its log verified.

    ``as_of`` is the instant grant statuses are computed at and the default end of a review:
    the export time for a bundle or parquet export, the time of loading for a ledger file (never
    earlier than the last audit entry).
    """

    developers: pd.DataFrame
    agents: pd.DataFrame
    grants: pd.DataFrame
    tokens: pd.DataFrame
    auth_requests: pd.DataFrame
    policies: pd.DataFrame
    audit: pd.DataFrame
    checkpoints: pd.DataFrame
    kind: str
    path: str
    settings: dict[str, Any]
    integrity: Integrity
    as_of: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz="UTC"))

    def frames(self) -> dict[str, pd.DataFrame]:
        """The eight frames by name (the names of :data:`SCHEMAS`)."""
        return {name: getattr(self, name) for name in TABLES}

    def actions(self) -> pd.DataFrame:
        """The agents' own actions (what ``audit.log`` recorded), without lifecycle events.

        A filtered copy: use it for exploring, the checks select only the columns they need.
        """
        return self.audit[~is_lifecycle(self.audit["action"])]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(frame)}" for name, frame in self.frames().items())
        return (
            f"Dataset(kind={self.kind!r}, path={self.path!r}, {sizes}, "
            f"integrity={'valid' if self.integrity.valid else 'BROKEN'})"
        )


def is_lifecycle(actions: pd.Series) -> pd.Series:
    """True for the ledger's own events (``grantex.*``), False for agent actions."""
    return actions.str.startswith(LIFECYCLE_PREFIX).fillna(False).astype(bool)



def safe_map(keys: pd.Series, mapping: pd.Series) -> pd.Series:
    """``keys.map(mapping)``, also when ``mapping`` is empty (pandas cannot map an empty
    datetime or text Series), keeping the mapping's dtype."""
    if len(mapping):
        return keys.map(mapping)
    empty = pd.Series([None] * len(keys), index=keys.index, dtype=object)
    try:
        return empty.astype(mapping.dtype)
    except (TypeError, ValueError):
        return empty


def to_utc(value: Any) -> pd.Timestamp:
    """A UTC ``Timestamp`` from text, a datetime, a Timestamp or epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        stamp = pd.Timestamp(value, unit="s", tz="UTC")
    else:
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.as_unit("ns")


# ── building tidy frames ─────────────────────────────────────────────────────


def empty_frame(table: str) -> pd.DataFrame:
    return tidy({name: [] for name, _ in SCHEMAS[table]}, table)


def tidy(columns: dict[str, Any], table: str) -> pd.DataFrame:
    """A frame with exactly the table's schema from columns (lists, arrays or Series) by name.

    Missing columns become all-missing; JSON-text columns must already be decoded.
    """
    n = max((len(v) for v in columns.values()), default=0)
    out: dict[str, Any] = {}
    for name, kind in SCHEMAS[table]:
        values = columns.get(name)
        if values is None:
            values = [None] * n
        out[name] = column(values, kind)
    return pd.DataFrame(out)


def column(values: Any, kind: Kind) -> pd.Series:
    """One column converted to its kind's dtype."""
    if kind == "str":
        if isinstance(values, pa.ChunkedArray | pa.Array):
            return _arrow_str(values)
        series = pd.Series(values, dtype=object)
        series = series.where(series.notna(), None)
        try:
            return series.astype("str")
        except UnicodeEncodeError:  # a lone surrogate stored before the text checks: shown escaped
            return series.map(_encodable, na_action="ignore").astype("str")
    if kind == "int":
        series = pd.Series(values)
        if series.isna().any():
            return series.astype("Int64")
        return series.astype("int64")
    if kind == "float":
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype("float64")
    if kind == "nint":
        if isinstance(values, pd.Series) and str(values.dtype) == "Int64":
            return values
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").astype("Int64")
    if kind == "bool":
        return pd.Series(values, dtype=object).fillna(False).astype(bool)
    if kind == "nbool":
        if isinstance(values, pd.Series) and str(values.dtype) == "boolean":
            return values
        return pd.Series(values, dtype=object).astype("boolean")
    if kind == "time":
        return times(values)
    series = pd.Series(values, dtype=object)
    return series.where(series.notna(), None)


def _arrow_str(values: pa.ChunkedArray | pa.Array) -> pd.Series:
    if isinstance(values, pa.Array):
        values = pa.chunked_array([values])
    if values.type != pa.string():
        values = values.cast(pa.string())
    series = values.to_pandas()
    return series if series.dtype == "str" else series.astype("str")


def times(values: Any) -> pd.Series:
    """ISO-8601 text (or None) → ``datetime64[ns, UTC]``."""
    if isinstance(values, pd.Series) and str(values.dtype) == TIME:
        return values
    if isinstance(values, pa.ChunkedArray | pa.Array):
        values = _arrow_str(values)
    parsed = pd.to_datetime(
        pd.Series(values, dtype=object) if isinstance(values, list) else values,
        format="ISO8601",
        utc=True,
        errors="coerce",
    )
    return pd.Series(parsed).astype(TIME).reset_index(drop=True)


def derive_grants(grants: pd.DataFrame, auth_requests: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Add the consent record, the delegation root and depth along parent links, and the status.

    The depth is counted, not copied from ``delegation_depth``, so a grant whose stored depth
    disagrees with its real parent chain is visible; a chain that breaks (a parent missing) or
    loops leaves ``root_grant_id`` and ``depth`` missing.
    """
    grants = grants.copy()
    exchanged = auth_requests.loc[auth_requests["grant_id"].notna(), ["grant_id", "auth_request_id"]]
    consent = exchanged.drop_duplicates("grant_id").set_index("grant_id")["auth_request_id"]
    grants["auth_request_id"] = safe_map(grants["grant_id"], consent).astype("str")
    root, depth = delegation_roots(grants["grant_id"], grants["parent_grant_id"])
    grants["root_grant_id"] = root
    grants["depth"] = depth
    status = np.where(
        grants["revoked_at"].notna(), "revoked", np.where(grants["expires_at"] <= as_of, "expired", "active")
    )
    grants["status"] = pd.Series(status, index=grants.index).astype("str")
    return grants


def delegation_roots(ids: pd.Series, parents: pd.Series, limit: int = 64) -> tuple[pd.Series, pd.Series]:
    """(root id, depth) per grant by walking parent links, one vectorised step per level."""
    parent_of = pd.Series(parents.to_numpy(dtype=object), index=ids.to_numpy(dtype=object))
    parent_of = parent_of[~parent_of.index.duplicated()]
    known = set(parent_of.index)
    root = pd.Series([None] * len(ids), index=ids.index, dtype=object)
    depth = pd.Series(pd.NA, index=ids.index, dtype="Int64")
    current = ids.astype(object)
    open_ = pd.Series(True, index=ids.index)
    for step in range(limit + 1):
        if not open_.any():
            break
        present = current.isin(known)
        up = safe_map(current, parent_of)
        at_root = open_ & present & up.isna()
        root[at_root] = current[at_root]
        depth[at_root] = step
        open_ &= ~at_root & present
        current = up
    return root.astype("str"), depth


# ── the audit table, chunk by chunk ──────────────────────────────────────────


PREIMAGE_KEYS = {
    "entry_id": "id",
    "agent_id": "agentId",
    "agent_did": "agentDid",
    "grant_id": "grantId",
    "principal_id": "principalId",
    "developer_id": "developerId",
    "action": "action",
    "timestamp": "timestamp",
    "prev_hash": "prevHash",
    "status": "status",
}
"""Frame column → preimage key, for every field but metadata."""

AUDIT_SQL = (
    "SELECT seq, hash, id, agent_id, agent_did, grant_id, principal_id, developer_id, action, timestamp, "
    "prev_hash, status, json_extract(preimage, '$.metadata'){extra} FROM audit_entries{where} "
    "ORDER BY developer_id, seq"
)
"""The audit table from a ledger: the generated columns (read out of each stored preimage by
SQLite, so they cannot differ from the hashed bytes) and the metadata object as JSON text."""
AUDIT_SQL_COLUMNS = (
    "seq",
    "hash",
    "entry_id",
    "agent_id",
    "agent_did",
    "grant_id",
    "principal_id",
    "developer_id",
    "action",
    "timestamp",
    "prev_hash",
    "status",
    "metadata",
)


def decode_metadata(text: Any) -> Any:
    if text is None:
        return {}
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text  # a scalar metadata value: json_extract returns it unquoted


def chunks_from_sql(rows: Sequence[Sequence[Any]]) -> dict[str, Sequence[Any]]:
    """Columns of one chunk of :data:`AUDIT_SQL` rows (metadata decoded)."""
    if not rows:
        return {name: [] for name in AUDIT_STORED}
    columns: dict[str, Sequence[Any]] = dict(zip(AUDIT_SQL_COLUMNS, zip(*rows, strict=True), strict=False))
    columns["metadata"] = list(map(decode_metadata, columns["metadata"]))
    return columns


def chunks_from_preimages(rows: Sequence[Sequence[Any]]) -> dict[str, list[Any]]:
    """Columns of one chunk from ``(seq, hash, preimage)`` rows, parsing each preimage in Python.

    The slow path, for ledgers whose stored bytes are not all JSON (SQLite's ``json_extract``
    refuses the whole query then); a preimage that does not parse gives missing fields.
    """
    columns: dict[str, list[Any]] = {name: [] for name in AUDIT_STORED}
    for seq, digest, text in rows:
        try:
            parsed = json.loads(text)
        except (TypeError, ValueError):
            parsed = None
        if not isinstance(parsed, dict):
            parsed = {}
        columns["seq"].append(seq)
        columns["hash"].append(digest)
        for name, key in PREIMAGE_KEYS.items():
            columns[name].append(_text_or_none(parsed.get(key)))
        meta = parsed.get("metadata")
        columns["metadata"].append(meta if meta is not None else {})
    return columns


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) or value is None else json.dumps(value)


def flatten_metadata(metas: Sequence[Any]) -> tuple[list[str | None], list[float]]:
    """The ``scope`` and ``amount`` columns from metadata (module docstring of checks)."""
    scopes: list[str | None] = []
    amounts: list[float] = []
    nan = float("nan")
    for meta in metas:
        if not isinstance(meta, dict):
            scopes.append(None)
            amounts.append(nan)
            continue
        scope = meta.get("scope")
        scopes.append(scope if isinstance(scope, str) or scope is None else json.dumps(scope))
        amount = meta.get("amount")
        if isinstance(amount, bool) or amount is None:
            amounts.append(nan)
        elif isinstance(amount, int | float):
            amounts.append(float(amount))
        else:
            try:
                amounts.append(float(str(amount)))
            except ValueError:
                amounts.append(nan)
    return scopes, amounts


_NO_TIME = np.iinfo(np.int64).min


@dataclass(frozen=True)
class OfflinePieces:
    """The offline-origin columns of one chunk, ready for Arrow or pandas without a Python object
    per row: ``seq``/``after`` carry a mask (True = missing), times are int64 nanoseconds with
    :data:`_NO_TIME` for missing."""

    bundle_id: pa.Array
    seq: np.ndarray
    seq_missing: np.ndarray
    device: np.ndarray
    synced: np.ndarray
    after: np.ndarray
    after_missing: np.ndarray

    def arrow(self) -> dict[str, pa.Array]:
        """The five columns as Arrow arrays (the parquet export's types)."""
        def instants(ns: np.ndarray) -> pa.Array:
            return pa.array(ns, type=pa.int64(), mask=ns == _NO_TIME).cast(pa.timestamp("ns", tz="UTC"))

        return {
            "offline_bundle_id": self.bundle_id,
            "offline_seq": pa.array(self.seq, type=pa.int64(), mask=self.seq_missing),
            "device_timestamp": instants(self.device),
            "synced_at": instants(self.synced),
            "after_revocation": pa.array(self.after, type=pa.bool_(), mask=self.after_missing),
        }


def flatten_offline(metas: Sequence[Any]) -> OfflinePieces:
    """The offline-origin columns from ``metadata["offline"]`` of one chunk.

    One cheap pass finds the entries that have an offline origin (usually few); only those are
    looked into, and their stamps are parsed by pandas in one call per column.
    """
    n = len(metas)
    origins = [m.get("offline") if type(m) is dict else None for m in metas]
    hits = [i for i, o in enumerate(origins) if type(o) is dict]
    seq = np.zeros(n, dtype=np.int64)
    seq_missing = np.ones(n, dtype=bool)
    after = np.zeros(n, dtype=bool)
    after_missing = np.ones(n, dtype=bool)
    device = np.full(n, _NO_TIME, dtype=np.int64)
    synced = np.full(n, _NO_TIME, dtype=np.int64)
    if not hits:
        nothing = pa.nulls(n, type=pa.string())
        return OfflinePieces(nothing, seq, seq_missing, device, synced, after, after_missing)
    bundle: list[str | None] = [None] * n
    device_text: list[Any] = []
    synced_text: list[Any] = []
    for i in hits:
        origin = origins[i]
        assert isinstance(origin, dict)
        bundle_id = origin.get("bundleId")
        bundle[i] = bundle_id if isinstance(bundle_id, str) or bundle_id is None else json.dumps(bundle_id)
        number = origin.get("offlineSeq")
        if isinstance(number, int) and not isinstance(number, bool):
            seq[i], seq_missing[i] = number, False
        flag = origin.get("afterRevocation")
        after[i], after_missing[i] = flag is True, False
        device_text.append(origin.get("deviceTimestamp"))
        synced_text.append(origin.get("syncedAt"))
    where = np.asarray(hits, dtype=np.int64)
    device[where] = _nanoseconds(device_text)
    synced[where] = _nanoseconds(synced_text)
    return OfflinePieces(_text_array(bundle), seq, seq_missing, device, synced, after, after_missing)


def _nanoseconds(values: list[Any]) -> np.ndarray:
    """ISO-8601 stamps (any offset) → int64 UTC nanoseconds, :data:`_NO_TIME` where unreadable."""
    text = pd.Series([v if isinstance(v, str) else None for v in values], dtype=object)
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    return parsed.astype(TIME).to_numpy(dtype="int64", na_value=_NO_TIME)


def offline_frame(metadata: pd.Series) -> dict[str, pd.Series]:
    """The offline-origin columns for a whole metadata column (an export written before they were
    stored), as frame columns on the same index."""
    return _offline_series([flatten_offline(metadata.tolist())], metadata.index)


def _offline_series(pieces: list[OfflinePieces], index: pd.Index | None = None) -> dict[str, pd.Series]:
    def instants(name: str) -> pd.Series:
        stamps = np.concatenate([getattr(p, name) for p in pieces])
        out = pd.Series(pd.to_datetime(stamps, unit="ns", utc=True), index=index).astype(TIME)
        return out.where(stamps != _NO_TIME)

    seq = pd.arrays.IntegerArray(np.concatenate([p.seq for p in pieces]),
                                 np.concatenate([p.seq_missing for p in pieces]))
    after = pd.arrays.BooleanArray(np.concatenate([p.after for p in pieces]),
                                   np.concatenate([p.after_missing for p in pieces]))
    bundle = _arrow_str(pa.chunked_array([p.bundle_id for p in pieces], type=pa.string()))
    if index is not None:
        bundle.index = index
    return {
        "offline_bundle_id": bundle,
        "offline_seq": pd.Series(seq, index=index),
        "device_timestamp": instants("device"),
        "synced_at": instants("synced"),
        "after_revocation": pd.Series(after, index=index),
    }


class AuditBuilder:
    """Collects the audit table chunk by chunk as Arrow and NumPy pieces, then makes the frame.

    Text goes to Arrow arrays (a few bytes per value instead of a Python object each), times to
    int64 nanoseconds, metadata stays a list of dicts (the frame's column holds that same list).
    """

    _TEXT = (
        "entry_id",
        "developer_id",
        "agent_id",
        "agent_did",
        "grant_id",
        "principal_id",
        "action",
        "status",
        "hash",
        "prev_hash",
        "scope",
    )

    def __init__(self) -> None:
        self._text: dict[str, list[pa.Array]] = {name: [] for name in self._TEXT}
        self._seq: list[np.ndarray] = []
        self._time: list[np.ndarray] = []
        self._amount: list[np.ndarray] = []
        self._offline: list[OfflinePieces] = []
        self._metadata: list[Any] = []
        self.rows = 0

    def add(self, columns: Mapping[str, Sequence[Any]]) -> None:
        """One chunk: every column of :data:`AUDIT_STORED` (metadata decoded), same length."""
        metas = columns["metadata"]
        scopes, amounts = flatten_metadata(metas)
        for name in self._TEXT:
            values = scopes if name == "scope" else columns[name]
            self._text[name].append(_text_array(values))
        self._seq.append(np.asarray(columns["seq"], dtype=np.int64))
        stamps = pd.to_datetime(
            pd.Series(columns["timestamp"], dtype=object), format="ISO8601", utc=True, errors="coerce"
        )
        self._time.append(stamps.astype(TIME).to_numpy(dtype="int64", na_value=np.iinfo(np.int64).min))
        self._amount.append(np.asarray(amounts, dtype=np.float64))
        self._offline.append(flatten_offline(metas))
        self._metadata.extend(metas)
        self.rows += len(metas)

    def frame(self) -> pd.DataFrame:
        if not self.rows:
            return empty_frame("audit")
        out: dict[str, Any] = {}
        offline = _offline_series(self._offline)
        self._offline = []
        for name, _ in SCHEMAS["audit"]:
            if name in offline:
                out[name] = offline[name]
            elif name == "seq":
                out[name] = pd.Series(np.concatenate(self._seq))
            elif name == "timestamp":
                stamps = np.concatenate(self._time)
                out[name] = pd.Series(pd.to_datetime(stamps, unit="ns", utc=True)).astype(TIME)
                out[name] = out[name].where(stamps != np.iinfo(np.int64).min)
            elif name == "amount":
                out[name] = pd.Series(np.concatenate(self._amount))
            elif name == "metadata":
                meta = pd.Series(self._metadata, dtype=object)
                self._metadata = []
                out[name] = meta
            else:
                out[name] = _arrow_str(pa.chunked_array(self._text.pop(name), type=pa.string()))
        self._seq, self._time, self._amount = [], [], []
        return pd.DataFrame(out)


def _text_array(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):
        return pa.array([_encodable(v) for v in values], type=pa.string())


def _encodable(value: Any) -> str | None:
    """Text Arrow can hold: lone surrogates (a row stored before the text checks, or bytes that
    are not UTF-8) written as ``\\udxxx``, anything not text as its JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return escape_surrogates(value)
    return json.dumps(value)


def read_chunks(cursor: sqlite3.Cursor, size: int = CHUNK_ROWS) -> Iterator[list[Any]]:
    """A cursor's rows, ``size`` at a time."""
    while rows := cursor.fetchmany(size):
        yield rows


def build_audit(
    chunks: Iterable[Mapping[str, Sequence[Any]]], progress: Callable[[int], None] | None = None
) -> pd.DataFrame:
    builder = AuditBuilder()
    collecting = gc.isenabled()
    gc.disable()  # a million new dicts would trigger full collections over and over
    try:
        for columns in chunks:
            builder.add(columns)
            if progress is not None:
                progress(builder.rows)
        return builder.frame()
    finally:
        if collecting:
            gc.enable()
