"""``export`` and ``verify-export``: signed, self-contained bundles of a ledger, checked offline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .. import errors
from . import (
    CheckFailed,
    echo_fields,
    echo_json,
    emit,
    failed_checks,
    failure_json,
    json_option,
    key_option,
    ledger_option,
    with_ledger,
)

if TYPE_CHECKING:
    from ..founding import Ledger


@click.command("export")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Replace an earlier export bundle at OUT.")
@click.option("--format", "fmt", type=click.Choice(["bundle", "parquet"]), default="bundle",
              show_default=True,
              help="bundle: JSON Lines + CSV, checked by verify-export; parquet: a signed dataset "
                   "partitioned by developer and month, for the review in DuckDB, Spark or pandas "
                   "(grantex_local.analysis.load).")
@json_option
@failed_checks
@with_ledger
def export_command(ledger: Ledger, out: str, force: bool, fmt: str, as_json: bool) -> None:
    """Write a signed, self-contained bundle of the ledger (no secrets) to directory OUT."""
    from ..export import bundle_file_count, export_bundle
    from .progress import progress_bar

    if fmt == "parquet":
        from ..analysis.parquet import export_parquet  # pandas and pyarrow only on this path

        with progress_bar("exporting to parquet", as_json=as_json) as bar:
            written = export_parquet(ledger, out, force=force, progress=bar)
        emit(as_json, written, lambda: click.echo(f"parquet export written to {written['path']}"))
        return
    with progress_bar("exporting", as_json=as_json) as bar:
        manifest = export_bundle(ledger, out, force=force, progress=bar)

    def human() -> None:
        files = manifest["files"]
        echo_fields([("bundle", manifest["path"]), ("ledger", manifest["ledgerId"]),
                     ("created", manifest["createdAt"]), ("files", bundle_file_count(manifest)),
                     *((name.removesuffix(".jsonl").replace("_", " "), files[name]["rows"])
                       for name in files if name.endswith(".jsonl")),
                     ("chains", len(manifest["chains"])), ("checkpoint key", manifest["checkpointKey"])])
        click.echo(f"check it anywhere with: grantex-local verify-export {out} --key KEY", err=True)

    emit(as_json, manifest, human)


@click.command("verify-export")
@click.argument("path", type=click.Path(exists=True))
@key_option(False, "The public checkpoint key (text or file) obtained out of band (default: the key "
                   "in the bundle, which only shows the bundle is self-consistent).")
@json_option
@ledger_option
def verify_export(path: str, verifier_key: str | None, as_json: bool) -> None:
    """Check an export bundle (or a hosted-service audit export) offline; exit 1 naming what is wrong."""
    from ..audit.note import CheckpointInvalid
    from ..export import ExportInvalid, verify_bundle
    from .progress import progress_bar

    try:
        with progress_bar("verifying the export", "rows", as_json=as_json) as bar:
            summary = verify_bundle(path, verifier_key=verifier_key, progress=bar)
    except (ExportInvalid, errors.ChainBroken, CheckpointInvalid) as exc:
        if as_json:
            echo_json(failure_json(exc))
        raise CheckFailed(f"export does not verify: {exc.message}") from None
    if summary.get("warning"):
        click.echo(f"warning: {summary['warning']}", err=True)

    def human() -> None:
        click.echo(f"valid: {summary['entries']} audit entries in {len(summary['chains'])} chain(s)"
                   + (f", {summary['files']} files" if "files" in summary else ""))
        for chain in summary["chains"]:
            click.echo(f"  {chain['developerId']}: {chain['entries']} entries, "
                       f"head {chain['headHash'] or '-'}")
        if summary.get("format") == "evidence-pack":
            click.echo(f"evidence pack: signature, {summary['grants']} grants, {summary['policies']} "
                       "policies and the summary's counts check; the entries "
                       + ("start at the chain's first entry" if summary["startsAtChainStart"] else
                          "are a window of the chain (links checked inside it, not back to its start)"))

    emit(as_json, summary, human)
