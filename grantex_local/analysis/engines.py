"""SQL engines the checks run on: DuckDB (embedded, out of core) and Spark (a cluster, or local).

Why an engine layer: a check defined once in SQL must run unchanged where the audit table lives,
in DuckDB on a laptop (a parquet export never becomes a pandas frame; DuckDB spills to disk past
its memory limit) or in Spark where a larger organisation keeps it. An engine does three things
only: register a table (an Arrow table, a pandas frame, or a hive-partitioned parquet dataset),
run one SQL text, and hand the result back as pandas with the same dtypes whichever engine ran
it (UTC ``datetime64[ns]`` instants, ``Int64`` for whole numbers that can be missing), so the
Python that formats a check's evidence is shared.

Both engines are driven through Arrow, never through their own pandas conversion: PySpark 4
warns that it does not support pandas 3, and Arrow keeps types exact (a missing integer stays
missing, not NaN). Spark's session time zone is set to UTC so ``timestamp`` means an instant in
both engines; instants given to a query come in as a registered one-row table, not as literals
(the two dialects spell a zoned timestamp literal differently).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ..audit import checkpoints as audit_checkpoints
from ..errors import InvalidInput
from ..founding import Ledger
from ..progress import Progress
from .frames import SCHEMAS, TIME, Dataset, Integrity, derive_grants, empty_frame, to_utc
from .parquet import (
    PART_SCHEMA,
    arrow_to_frame,
    frame_to_arrow,
    layout_version,
    manifest_created,
    manifest_settings,
    read_table,
    reviewable_manifest,
    verify_parquet,
)
from .partitions import AUDIT_DIR, PARTITION_COLUMNS

SPARK_MASTER = "local[2]"
DEFAULT_MEMORY_CAP = 1 << 30
"""DuckDB's memory limit unless told otherwise: a quarter of the machine's memory, at most 1 GiB.
DuckDB's own default (80 % of RAM) is for a dedicated box; an auditor's laptop runs a notebook
beside it, and the acceptance bar is 2 GB peak for load + all checks whatever the ledger's size."""

AUDIT_COLUMNS = tuple(name for name, _ in SCHEMAS["audit"])
"""What the ``audit`` table of an engine holds, whatever the source (no preimage: the chain is
verified by the library's own verifier, not by SQL)."""


def machine_memory() -> int:
    """Physical memory in bytes (0 when the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def default_memory_limit() -> int:
    total = machine_memory()
    return min(DEFAULT_MEMORY_CAP, total // 4) if total else DEFAULT_MEMORY_CAP


# ── result normalisation, shared by both engines ─────────────────────────────


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """An engine's Arrow result as pandas, with one dtype per Arrow type whichever engine made it."""
    out: dict[str, pd.Series] = {}
    for name, values in zip(table.column_names, table.columns, strict=True):
        kind = values.type
        if pa.types.is_timestamp(kind):
            stamps = values.cast(pa.timestamp("us", tz="UTC") if kind.tz else pa.timestamp("us"))
            series = stamps.to_pandas()
            series = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
            out[name] = series.astype(TIME)
        elif pa.types.is_integer(kind):
            out[name] = values.cast(pa.int64()).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        elif pa.types.is_decimal(kind):  # DuckDB's SUM of integers is a HUGEINT → decimal128
            out[name] = values.cast(pa.float64()).to_pandas()
        elif pa.types.is_null(kind):
            out[name] = pd.Series([None] * len(values), dtype=object)
        else:
            out[name] = values.to_pandas()
    return pd.DataFrame(out, columns=table.column_names)


def _arrow_params(values: dict[str, Any]) -> pa.Table:
    """A one-row table of query parameters: instants as UTC microseconds, numbers as float64."""
    arrays, names = [], []
    for name, value in values.items():
        names.append(name)
        if isinstance(value, pd.Timestamp):
            arrays.append(pa.array([value.as_unit("us").to_pydatetime()], type=pa.timestamp("us", tz="UTC")))
        elif value is None:
            arrays.append(pa.array([None], type=pa.timestamp("us", tz="UTC")))
        elif isinstance(value, bool):
            arrays.append(pa.array([value], type=pa.bool_()))
        elif isinstance(value, int | float):
            arrays.append(pa.array([float(value)], type=pa.float64()))
        else:
            arrays.append(pa.array([str(value)], type=pa.string()))
    return pa.Table.from_arrays(arrays, names=names)


def _spark_safe(table: pa.Table) -> pa.Table:
    """Microsecond instants and no null-typed columns: what Spark's Arrow reader accepts."""
    fields = []
    for f in table.schema:
        kind = f.type
        if pa.types.is_timestamp(kind):
            kind = pa.timestamp("us", tz="UTC")
        elif pa.types.is_null(kind):
            kind = pa.string()
        elif pa.types.is_large_string(kind):
            kind = pa.string()
        fields.append(pa.field(f.name, kind))
    return table.cast(pa.schema(fields), safe=False)


# ── the engines ──────────────────────────────────────────────────────────────


class Engine(ABC):
    """Register tables, run SQL, get pandas back.

    An engine holds one dataset at a time (the checks' SQL names its tables ``audit``,
    ``grants``, ...): registering another replaces the first, and :func:`engine_dataset` refuses
    the first from then on rather than judge it on the second's rows."""

    name: str
    holder: object | None = None
    errors: tuple[type[BaseException], ...] = ()
    """What the engine raises for SQL it cannot run (a typo, an unknown column)."""

    @abstractmethod
    def register_arrow(self, name: str, table: pa.Table) -> None:
        """Make ``table`` queryable as ``name`` (replacing an earlier one)."""

    @abstractmethod
    def register_parquet(self, name: str, root: Path, schema: pa.Schema) -> None:
        """A hive-partitioned parquet dataset under ``root`` as ``name``; ``schema`` holds the
        file columns and the partition columns (text), so no engine guesses types from paths."""

    @abstractmethod
    def arrow(self, sql: str) -> pa.Table:
        """Run one SQL text; the whole result as Arrow."""

    @abstractmethod
    def execute(self, sql: str) -> None:
        """Run a statement (a view's DDL) for its effect."""

    def sql(self, sql: str) -> pd.DataFrame:
        return arrow_to_pandas(self.arrow(sql))

    def caller_arrow(self, sql: str) -> pa.Table:
        """:meth:`arrow` for SQL a person wrote (``ds.sql``, ``where=``): the engine's own error
        becomes InvalidInput naming the engine and its message, not a traceback from its driver."""
        try:
            return self.arrow(sql)
        except self.errors as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInput(f"{self.name} could not run the query: {first}") from None

    def define_audit(self) -> None:
        """The ``audit`` view the checks read, over ``audit_source`` however that was registered:
        the columns of :data:`AUDIT_COLUMNS`, a missing amount as NULL (the parquet export and a
        pandas frame hold NaN, which both engines' COUNT counts and Spark sorts above every number)."""
        columns = ", ".join(
            "CASE WHEN isnan(amount) THEN NULL ELSE amount END AS amount" if c == "amount" else c
            for c in AUDIT_COLUMNS
        )
        self.execute(f"CREATE OR REPLACE TEMPORARY VIEW audit AS SELECT {columns} FROM audit_source")

    def register_frame(self, name: str, frame: pd.DataFrame, table: str | None = None) -> None:
        """A pandas frame as ``name``; ``table`` (a :data:`SCHEMAS` name) gives the exact types,
        JSON columns as text, else Arrow infers them."""
        data = frame_to_arrow(frame, table) if table is not None else pa.Table.from_pandas(
            frame, preserve_index=False
        )
        self.register_arrow(name, data)

    def register_params(self, name: str, values: dict[str, Any]) -> None:
        self.register_arrow(name, _arrow_params(values))

    def close(self) -> None:  # noqa: B027 - engines without resources need nothing
        """Release what the engine holds (its temp directory, a session it made)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DuckDBEngine(Engine):
    """Embedded DuckDB with a memory limit from the machine and a temp directory to spill to."""

    name = "duckdb"

    def __init__(
        self,
        *,
        memory_limit: int | str | None = None,
        temp_directory: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ) -> None:
        try:
            import duckdb
        except ImportError:  # pragma: no cover - duckdb is a dependency of the analysis extra
            raise InvalidInput("the DuckDB engine needs duckdb: pip install duckdb") from None
        self._own_temp = temp_directory is None
        self.temp_directory = Path(temp_directory or tempfile.mkdtemp(prefix="grantex-duckdb-"))
        limit = memory_limit if memory_limit is not None else default_memory_limit()
        self.memory_limit = f"{limit // (1 << 20)}MB" if isinstance(limit, int) else str(limit)
        config: dict[str, Any] = {
            "memory_limit": self.memory_limit,
            "temp_directory": str(self.temp_directory),
            "preserve_insertion_order": False,  # lets big scans and window sorts spill
        }
        if threads is not None:
            config["threads"] = threads
        self.errors = (duckdb.Error,)
        self.con = duckdb.connect(":memory:", config=config)
        self.con.execute("SET TimeZone = 'UTC'")
        self._held: dict[str, Any] = {}

    def register_arrow(self, name: str, table: pa.Table) -> None:
        self.con.execute(f"DROP VIEW IF EXISTS {name}")
        self._held[name] = table  # DuckDB scans it in place: keep it alive
        self.con.register(name, table)

    def execute(self, sql: str) -> None:
        self.con.execute(sql)

    def register_parquet(self, name: str, root: Path, schema: pa.Schema) -> None:
        if self._held.pop(name, None) is not None:  # a registered object would shadow the view
            self.con.unregister(name)
        pattern = str(root / "**" / "*.parquet").replace("'", "''")
        hive = ", ".join(f"'{c}': VARCHAR" for c in PARTITION_COLUMNS)
        self.con.execute(
            f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{pattern}', "
            f"hive_partitioning = true, hive_types = {{{hive}}})"
        )

    def arrow(self, sql: str) -> pa.Table:
        result = self.con.sql(sql).to_arrow_table()
        return result if isinstance(result, pa.Table) else pa.table(result)

    def close(self) -> None:
        self.con.close()
        self._held.clear()
        if self._own_temp:
            shutil.rmtree(self.temp_directory, ignore_errors=True)


class SparkEngine(Engine):
    """A SparkSession given by the caller, or a ``local[2]`` one made (and stopped) here."""

    name = "spark"

    def __init__(self, session: Any = None, *, master: str = SPARK_MASTER, driver_memory: str = "1g") -> None:
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise InvalidInput("the Spark engine needs pyspark: pip install 'grantex-local[spark]'") from None
        if session is None:  # a session already running in this process is used, not replaced
            session = SparkSession.getActiveSession()
        self._own = session is None
        if session is None:
            session = (
                SparkSession.builder.master(master)
                .appName("grantex-local")
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.sql.shuffle.partitions", "4")
                .config("spark.driver.memory", driver_memory)
                .config("spark.sql.session.timeZone", "UTC")
                .getOrCreate()
            )
            session.sparkContext.setLogLevel("ERROR")
        self._zone = None if self._own else session.conf.get("spark.sql.session.timeZone", None)
        session.conf.set("spark.sql.session.timeZone", "UTC")  # the checks compare instants
        self.spark = session
        from pyspark.errors import PySparkException

        self.errors = (PySparkException,)

    def register_arrow(self, name: str, table: pa.Table) -> None:
        self.spark.createDataFrame(_spark_safe(table)).createOrReplaceTempView(name)

    def execute(self, sql: str) -> None:
        self.spark.sql(sql)

    def register_parquet(self, name: str, root: Path, schema: pa.Schema) -> None:
        from pyspark.sql.pandas.types import from_arrow_schema

        spark_schema = from_arrow_schema(_spark_safe(schema.empty_table()).schema)
        frame = self.spark.read.schema(spark_schema).option("basePath", str(root)).parquet(str(root))
        frame.createOrReplaceTempView(name)

    def arrow(self, sql: str) -> pa.Table:
        result: pa.Table = self.spark.sql(sql).toArrow()
        return result

    def close(self) -> None:
        """Stop a session made here; give a caller's session its time zone back."""
        if self._own:
            self.spark.stop()
        elif self._zone is not None:
            self.spark.conf.set("spark.sql.session.timeZone", self._zone)


def open_engine(engine: Any = "duckdb", **options: Any) -> Engine:
    """``"duckdb"`` (the default), ``"spark"`` (a ``local[2]`` session), a SparkSession, or an
    :class:`Engine` already open."""
    if isinstance(engine, Engine):
        return engine
    if engine == "duckdb" or engine is None:
        return DuckDBEngine(**options)
    if engine == "spark":
        return SparkEngine(**options)
    if type(engine).__name__ == "SparkSession":
        return SparkEngine(engine, **options)
    raise InvalidInput(f"{engine!r} is not an engine: use 'duckdb', 'spark' or a SparkSession")


# ── a dataset whose audit table lives in an engine ───────────────────────────

AUDIT_FRAME_LIMIT = 2_000_000
"""The most audit entries :meth:`AuditTable.to_pandas` turns into one pandas frame unless told
otherwise: about 2.6 GB of pandas, past what a laptop running a notebook can spare."""


class AuditTable:
    """The audit log where the engine holds it: counted, sampled and queried there, and turned
    into a pandas frame only on request (a ten-million-entry log is 20 GB of pandas)."""

    def __init__(self, owner: EngineDataset) -> None:
        self.owner = owner
        self.engine = owner.engine

    def _arrow(self, sql: str) -> pa.Table:
        self.owner.check_held()  # a handle kept from before another dataset replaced this one
        return self.engine.caller_arrow(sql)

    def count(self) -> int:
        return int(self._arrow("SELECT COUNT(*) AS n FROM audit").column(0)[0].as_py())

    def __len__(self) -> int:
        return self.count()

    def sql(self, text: str) -> pd.DataFrame:
        """Any query over the ``audit`` view (and the small tables), as pandas."""
        return arrow_to_pandas(self._arrow(text))

    def head(self, n: int = 5) -> pd.DataFrame:
        """The first ``n`` entries in (developer, seq) order, with the loaded frame's columns."""
        return self.to_pandas(limit=None, where=None, rows=int(n))

    def to_pandas(self, limit: int | None = AUDIT_FRAME_LIMIT, *, where: str | None = None,
                  rows: int | None = None) -> pd.DataFrame:
        """The audit entries (those matching the SQL condition ``where``) as the frame
        :func:`~grantex_local.analysis.load` gives without an engine, in (developer, seq) order.

        Refuses (InvalidInput) when more than ``limit`` entries match: narrow ``where``, aggregate
        with :meth:`sql`, or pass ``limit=None`` knowing the memory it takes."""
        condition = f" WHERE {where}" if where else ""
        if limit is not None and rows is None:
            found = int(self._arrow(f"SELECT COUNT(*) AS n FROM audit{condition}").column(0)[0].as_py())
            if found > limit:
                raise InvalidInput(
                    f"the audit table holds {found} matching entries, more than the limit of {limit} for a "
                    "pandas frame: aggregate with ds.audit.sql(...), narrow it with where=..., or pass "
                    "limit=None"
                )
        cap = f" LIMIT {rows}" if rows is not None else ""
        data = self._arrow(
            f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit{condition} "
            f"ORDER BY developer_id ASC NULLS FIRST, seq ASC NULLS FIRST{cap}"
        )
        return arrow_to_frame(data, "audit")

    def __repr__(self) -> str:
        return f"AuditTable(engine={self.engine.name!r})"


@dataclass
class EngineDataset:
    """A :class:`~grantex_local.analysis.Dataset` whose audit log lives in an engine.

    The small tables (developers, agents, grants, tokens, auth_requests, policies, checkpoints)
    are pandas frames, as in a loaded Dataset, and are also registered in the engine under their
    own names so SQL can join them; ``audit`` is an :class:`AuditTable`, never a pandas frame by
    accident. The checks take either kind of dataset; the results are the same."""

    engine: Engine
    ds: Dataset
    owns_engine: bool = False
    temp_directory: Path | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    """Small derived tables a check computed once (revocation points, grant scope keys), so
    ``run_all`` does not rescan the log for each check that needs them."""

    @property
    def audit(self) -> AuditTable:
        self.check_held()
        return AuditTable(self)

    def check_held(self) -> None:
        """InvalidInput when the engine has since been given another dataset (its tables are gone)."""
        if self.engine.holder is not self:
            raise InvalidInput(
                f"another dataset was loaded into this {self.engine.name} engine since this one: "
                "give each dataset its own engine"
            )

    @property
    def developers(self) -> pd.DataFrame:
        return self.ds.developers

    @property
    def agents(self) -> pd.DataFrame:
        return self.ds.agents

    @property
    def grants(self) -> pd.DataFrame:
        return self.ds.grants

    @property
    def tokens(self) -> pd.DataFrame:
        return self.ds.tokens

    @property
    def auth_requests(self) -> pd.DataFrame:
        return self.ds.auth_requests

    @property
    def policies(self) -> pd.DataFrame:
        return self.ds.policies

    @property
    def checkpoints(self) -> pd.DataFrame:
        return self.ds.checkpoints

    @property
    def kind(self) -> str:
        return self.ds.kind

    @property
    def path(self) -> str:
        return self.ds.path

    @property
    def as_of(self) -> pd.Timestamp:
        return self.ds.as_of

    @property
    def settings(self) -> dict[str, Any]:
        return self.ds.settings

    @property
    def integrity(self) -> Integrity:
        return self.ds.integrity

    def sql(self, text: str) -> pd.DataFrame:
        """Any query over ``audit`` and the small tables, as pandas."""
        return self.audit.sql(text)

    def close(self) -> None:
        """Close the engine if this dataset opened it, and remove its temporary export."""
        if self.owns_engine:
            self.engine.close()
        if self.temp_directory is not None:
            shutil.rmtree(self.temp_directory, ignore_errors=True)
            self.temp_directory = None

    def __enter__(self) -> EngineDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(getattr(self, name))}" for name in SCHEMAS if name != "audit")
        return (
            f"EngineDataset(engine={self.engine.name!r}, kind={self.kind!r}, path={self.path!r}, "
            f"audit={self.audit.count()}, {sizes}, "
            f"integrity={'valid' if self.integrity.valid else 'BROKEN'})"
        )


def _small(engine: Engine, frames: dict[str, pd.DataFrame]) -> None:
    """The small tables, also visible to SQL (JSON columns as text)."""
    for table, frame in frames.items():
        if table == "grants":
            engine.register_frame(table, frame[[n for n, _ in SCHEMAS["grants"]]], table)
        elif table != "audit":
            engine.register_frame(table, frame, table)


def from_dataset(engine: Any, ds: Dataset, *, keep_frame: bool = True) -> EngineDataset:
    """A loaded :class:`Dataset` in an engine (an open :class:`Engine`, or a name or session as
    :func:`open_engine` takes: that engine is then closed with the dataset): its audit frame goes
    over as Arrow (metadata as JSON text), the small tables as they are. ``keep_frame=False``
    drops the pandas audit frame from the returned dataset once the engine holds it
    (``load(..., engine=)`` does)."""
    if not isinstance(engine, Engine):
        opened = open_engine(engine)
        try:
            eds = from_dataset(opened, ds, keep_frame=keep_frame)
        except BaseException:
            opened.close()
            raise
        eds.owns_engine = True
        return eds
    engine.register_frame("audit_source", ds.audit, "audit")
    engine.define_audit()
    _small(engine, ds.frames())
    if not keep_frame:
        ds = Dataset(**{**ds.frames(), "audit": empty_frame("audit")}, kind=ds.kind, path=ds.path,
                     settings=ds.settings, integrity=ds.integrity, as_of=ds.as_of)
    return _hold(EngineDataset(engine, ds))


def _hold(eds: EngineDataset) -> EngineDataset:
    eds.engine.holder = eds
    return eds


def from_parquet(engine: Engine, directory: str | os.PathLike[str], *, as_of: Any = None,
                 verifier_key: str | None = None, workers: int = 1,
                 progress: Progress | None = None) -> EngineDataset:
    """A version 2 parquet export in an engine, the audit parts scanned where they lie.

    The manifest is checked first (signature, every file's hash and size, nothing missing or
    unlisted, column types): ExportInvalid naming the file, never a partial review. Then every
    chain is walked by the library's streaming verifier (:func:`.parquet.verify_parquet`, in
    ``workers`` processes), so check 1 judges the same integrity record as a pandas load."""
    root = Path(directory)
    if layout_version(root) < 2:
        raise InvalidInput(
            f"{root} is a version 1 parquet export: export the ledger again to review it in an engine"
        )
    checked = reviewable_manifest(root, verifier_key)
    frames = {table: read_table(root, table) for table in SCHEMAS if table != "audit"}
    integrity = verify_parquet(root, verifier_key, frames["checkpoints"], workers=workers, progress=progress)
    (settings,) = manifest_settings(checked.manifest)
    created = manifest_created(checked.manifest)
    when = to_utc(as_of) if as_of is not None else (created or pd.Timestamp.now(tz="UTC")).as_unit("ns")
    frames["grants"] = derive_grants(frames["grants"], frames["auth_requests"], when)
    schema = PART_SCHEMA.remove(PART_SCHEMA.get_field_index("preimage"))
    for column in PARTITION_COLUMNS:
        schema = schema.append(pa.field(column, pa.string()))
    engine.register_parquet("audit_source", root / AUDIT_DIR, schema)
    engine.define_audit()
    _small(engine, frames)
    ds = Dataset(**frames, audit=empty_frame("audit"), kind="parquet", path=str(root), settings=settings,
                 integrity=integrity, as_of=when)
    return _hold(EngineDataset(engine, ds))


@contextmanager
def engine_dataset(ds: Dataset | EngineDataset, engine: Any = None) -> Iterator[EngineDataset]:
    """``ds`` in an engine for the length of a ``with``: an :class:`EngineDataset` as it is, a
    pandas :class:`Dataset` registered in ``engine`` (DuckDB when None), closed afterwards if
    opened here. Why every check takes both: the loaded frames of a small ledger (and frames an
    auditor edited by hand) are judged by the same SQL as a ten-million-entry export."""
    if isinstance(ds, EngineDataset):
        if engine is not None and engine is not ds.engine and engine != ds.engine.name:
            raise InvalidInput(
                f"the dataset is already in the {ds.engine.name} engine; run the checks there (engine=None)"
            )
        ds.check_held()
        yield ds
        return
    opened = open_engine(engine)
    try:
        yield from_dataset(opened, ds)
    finally:
        if opened is not engine:
            opened.close()


def load_into(path: Path, kind: str, engine: Any, *, verifier_key: str | None = None, as_of: Any = None,
              workers: int = 1, progress: Progress | None = None,
              read_frames: Any = None) -> EngineDataset:
    """What ``load(..., engine=...)`` returns: a version 2 parquet export scanned in place; a
    ledger file streamed into a temporary parquet export first (its chains are verified on the
    way, in bounded memory), so a large ledger never becomes a pandas frame; a bundle or a
    version 1 export (small by nature) read as frames by ``read_frames`` and handed over."""
    opened = open_engine(engine)
    owns = opened is not engine
    temp: Path | None = None
    try:
        if kind == "parquet" and layout_version(path.parent if path.is_file() else path) >= 2:
            eds = from_parquet(opened, path.parent if path.is_file() else path, as_of=as_of,
                               verifier_key=verifier_key, workers=workers, progress=progress)
        elif kind == "ledger":
            from .parquet import export_parquet

            temp = Path(tempfile.mkdtemp(prefix="grantex-review-"))
            export_parquet(path, temp / "export", progress=progress)
            given = verifier_key
            if verifier_key is None:  # the export is ours, signed with the ledger's own key:
                with Ledger(path, create=False) as ledger:  # judge it as loading the ledger would
                    verifier_key = audit_checkpoints.verifier_key(ledger)
            eds = from_parquet(
                opened, temp / "export", as_of=as_of, verifier_key=verifier_key, workers=workers
            )
            eds.ds.kind, eds.ds.path = "ledger", str(path)
            if given is None:
                eds.ds.integrity = dataclasses.replace(eds.ds.integrity, key_source="ledger")
        else:
            eds = from_dataset(opened, read_frames(), keep_frame=False)
    except BaseException:
        if owns:
            opened.close()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        raise
    eds.owns_engine, eds.temp_directory = owns, temp
    return eds
