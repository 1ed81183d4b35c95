"""Exporting a study: every table in CSV, JSONL and/or Parquet with a README, the manifest and the data dictionary.

`export_study(...)` writes one export into a directory or a zip file, streaming every table from the database
through all the requested writers at once (one pass per table). Researchers run it as a background job
(`export_request` → `oversight.exports.tasks.run_export` → `export_job_run`), whose file expires after
`EXPORT_TTL_HOURS`; `exports_cleanup` deletes expired files. `manage.py export_study` runs it from the shell.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import django
import pyarrow
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from oversight.core.enqueue import enqueue_on_commit
from oversight.core.models import Job, Study
from oversight.core.services.studies import manifest_hash
from oversight.exports import dictionary
from oversight.exports.registry import CHUNK_SIZE, ExportContext, exporters
from oversight.exports.writers import EXTENSIONS, FORMATS, WRITERS, iso

# Rows per batch: what is held in memory per table at a time, and the Parquet row-group size.
BATCH_ROWS = 50_000
PROGRESS_EVERY_S = 0.5
# A job still "running" after this long belongs to a worker that died (acks_late redelivers its task).
STALE_AFTER = timedelta(hours=2)
NOT_QUEUED = "Could not reach the task queue; nothing was exported. Ask for the export again."

Progress = Callable[[int, int, str], None]


class ExportError(Exception):
    """An export that cannot be made as asked (the message says why, for the researcher)."""


class ExportNotAllowed(ExportError):
    pass


def ttl_hours() -> float:
    return float(settings.EXPORT_TTL_HOURS)


def export_dir() -> Path:
    """Where export jobs keep their files: `EXPORT_DIR` (default `$DATA_DIR/exports`; never under MEDIA_ROOT)."""
    return Path(settings.EXPORT_DIR)


def normalise_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = FORMATS if formats == "all" else [formats]
    chosen = set(formats)
    unknown = chosen - set(FORMATS)
    if unknown or not chosen:
        raise ExportError(f"Formats must be among {', '.join(FORMATS)} (got {', '.join(sorted(unknown)) or 'none'}).")
    return tuple(f for f in FORMATS if f in chosen)


def check_allowed(*, study: Study, include_external_ids: bool) -> None:
    if include_external_ids and not study.allow_external_id_export:
        raise ExportNotAllowed(
            f"“{study.title}” does not allow exporting recruitment ids; switch on “allow external id export” in "
            "its recruitment settings first (or export without them)."
        )


def export_name(study: Study, now: datetime) -> str:
    return f"{study.slug}-export-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}"


@dataclass
class ExportResult:
    path: Path  # the zip file, or the directory the files were written to
    name: str
    formats: tuple[str, ...]
    row_counts: dict[str, int]
    meta: dict = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.row_counts.values())


def export_study(
    *,
    study: Study,
    formats: str | Iterable[str],
    include_external_ids: bool = False,
    include_pilots: bool = False,
    out_dir: Path | str | None = None,
    zip_path: Path | str | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    batch_rows: int = BATCH_ROWS,
    chunk_size: int = CHUNK_SIZE,
) -> ExportResult:
    """Write one export of `study` into `out_dir` (created; must be empty) or as the zip file `zip_path`.

    The zip holds one folder, `<slug>-export-<UTC time>/`, with the same files a directory export has.
    Raises ExportNotAllowed for external ids on a study that does not allow their export.
    """
    if (out_dir is None) == (zip_path is None):
        raise ValueError("give exactly one of out_dir and zip_path")
    check_allowed(study=study, include_external_ids=include_external_ids)
    formats = normalise_formats(formats)
    now = now or timezone.now()
    name = export_name(study, now)
    ctx = ExportContext(
        study=study, include_pilots=include_pilots, include_external_ids=include_external_ids, chunk_size=chunk_size
    )

    if zip_path is not None:
        zip_path = Path(zip_path)
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=zip_path.parent))
        folder = staging / name
    else:
        staging = None
        folder = Path(out_dir)
        if folder.exists() and any(folder.iterdir()):
            raise ExportError(f"{folder} is not empty.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        counts = write_tables(folder, ctx, formats, progress=progress, batch_rows=batch_rows)
        meta = write_documents(folder, ctx, formats, counts, name=name, now=now)
        if zip_path is None:
            return ExportResult(path=folder, name=name, formats=formats, row_counts=counts, meta=meta)
        write_zip(folder, zip_path, name=name)
        return ExportResult(path=zip_path, name=name, formats=formats, row_counts=counts, meta=meta)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def write_tables(
    folder: Path,
    ctx: ExportContext,
    formats: tuple[str, ...],
    *,
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
) -> dict[str, int]:
    """Stream every table through one writer per format; returns the rows written per table."""
    for fmt in formats:
        (folder / fmt).mkdir(exist_ok=True)
    tables = exporters(ctx)
    expected = {e.identifier: e.count() for e in tables}
    total = sum(expected.values())
    done = 0
    last = 0.0
    counts: dict[str, int] = {}

    def report(message: str, *, force: bool = False) -> None:
        nonlocal last
        if progress is None:
            return
        now = time.monotonic()
        if force or now - last >= PROGRESS_EVERY_S:
            last = now
            progress(done, max(total, done), message)

    for exporter in tables:
        name = exporter.identifier
        writers = [
            WRITERS[fmt](folder / fmt / f"{name}.{EXTENSIONS[fmt]}", exporter.columns, table=name) for fmt in formats
        ]
        size = min(batch_rows, exporter.batch_rows or batch_rows)
        written = 0
        report(f"Writing {name}", force=True)
        try:
            batch: list[tuple] = []
            for row in exporter.written_rows():
                batch.append(row)
                if len(batch) >= size:
                    for writer in writers:
                        writer.write(batch)
                    written += len(batch)
                    done += len(batch)
                    batch = []
                    report(f"Writing {name} ({written:,} of {expected[name]:,} rows)")
            if batch:
                for writer in writers:
                    writer.write(batch)
                written += len(batch)
                done += len(batch)
        finally:
            for writer in writers:
                writer.close()
        counts[name] = written
    report("Writing the README and the data dictionary", force=True)
    return counts


def write_documents(
    folder: Path, ctx: ExportContext, formats: tuple[str, ...], counts: dict[str, int], *, name: str, now: datetime
) -> dict:
    study = ctx.study
    stored_hash = study.manifest_hash
    verified = bool(study.manifest) and manifest_hash(study.manifest) == stored_hash
    meta = {
        "schema": dictionary.SCHEMA,
        "name": name,
        "exported_at": iso(now),
        "study": {
            "slug": study.slug,
            "title": study.title,
            "status": study.status,
            "design": study.design,
            "order": study.order,
            "confidence_format": study.confidence_format,
            # The scored tasks' bank formats: the report's expert reference row follows them.
            "task_formats": dict(study.tasks.filter(role="scored").values_list("name", "bank__format")),
            "launched_at": iso(study.launched_at) if study.launched_at else None,
            "closed_at": iso(study.closed_at) if study.closed_at else None,
        },
        "manifest_hash": stored_hash,
        "manifest_hash_verified": verified,
        "formats": list(formats),
        "include_pilots": ctx.include_pilots,
        "include_external_ids": ctx.include_external_ids,
        "row_counts": counts,
        "files": sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        + ["README.md", "data_dictionary.json", "data_dictionary.md", "export.json", "manifest.json"],
        "software": {"django": django.get_version(), "pyarrow": pyarrow.__version__},
    }
    meta["files"] = sorted(set(meta["files"]))
    _write_json(
        folder / "manifest.json",
        {"manifest_hash": stored_hash, "hash_algorithm": MANIFEST_HASH_TEXT, "manifest": study.manifest},
    )
    _write_json(folder / "data_dictionary.json", dictionary.as_json())
    (folder / "data_dictionary.md").write_text(dictionary.as_markdown(), encoding="utf-8")
    _write_json(folder / "export.json", meta)
    (folder / "README.md").write_text(readme(meta), encoding="utf-8")
    return meta


MANIFEST_HASH_TEXT = (
    "sha256 of the manifest serialised as JSON with sorted keys, no whitespace (separators ',' and ':') and "
    "non-ASCII characters as UTF-8: json.dumps(m, sort_keys=True, ensure_ascii=False, separators=(',', ':'))"
)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def readme(meta: dict) -> str:
    study = meta["study"]
    counts = meta["row_counts"]
    pilots = (
        "**included** (this export was asked for them): pilot participants' rows are present and "
        "`participants.is_pilot` marks them. The analysis never includes pilots; leave them out before analysing."
        if meta["include_pilots"]
        else "**left out**: pilot (test) participants and all their data (trials, messages, events, exclusions) "
        "are not in this export."
    )
    ids = (
        "**included**: `participants.external_id` holds the recruitment platform's id and `joined` events keep "
        "the recruitment parameters. This export identifies participants; do not publish it."
        if meta["include_external_ids"]
        else "**not included**: participants are known only by pseudonymous ids (`P<number>`); recruitment "
        "platform ids and parameters are removed."
    )
    lines = [
        f"# Data export: {study['title']}",
        "",
        f"Study `{study['slug']}` ({study['status']}), exported {meta['exported_at']} by the oversight platform. "
        "It holds everything recorded about the study's participants — trials, chat messages, event log, "
        "exclusions — with the study's design, items, passages, model-alone baselines and frozen manifest.",
        "",
        f"- Launched: {study['launched_at'] or 'not launched'}; closed: {study['closed_at'] or 'not closed'}.",
        f"- Design: {study['design']}, order {study['order']}, confidence format {study['confidence_format']}.",
        f"- Manifest hash (SHA-256): `{meta['manifest_hash'] or 'none (the study has no manifest)'}` — "
        + (
            "recomputed from `manifest.json` at export time and matching."
            if meta["manifest_hash_verified"]
            else "NOT verified (no manifest, or it does not match)."
        ),
        f"- Formats: {', '.join(meta['formats'])} (one folder each, one file per table).",
        f"- Export schema: `{meta['schema']}`.",
        "",
        "## Row counts",
        "",
        "| table | rows |",
        "|---|---:|",
        *[f"| `{name}` | {n:,} |" for name, n in counts.items()],
        "",
        "## Pilots, exclusions and identifiers",
        "",
        f"- Pilots: {pilots}",
        "- Exclusions are **not applied**: every exported participant's data is present. `exclusions` lists every "
        "decision (revoked ones too) and `participants.excluded` marks an active one. The primary analysis leaves "
        "out participants with an active exclusion; the report also gives the analysis without exclusions.",
        "- Screened-out participants (failed attention checks) are present with `participants.status = screened_out`.",
        f"- External (recruitment) ids: {ids}",
        "- Never exported: participant tokens, completion and screen-out codes, endpoint credentials, researchers' "
        "user names.",
        "",
        "## What is analysed",
        "",
        "The sandwiching report analyses scored trials (`trials.role = scored`) that are final (`answered` or "
        "`timed_out`) and whose item has a right answer, of non-pilot participants. A timed-out trial with nothing "
        "selected counts as wrong.",
        "",
        "## Files",
        "",
        *[f"- `{name}`: {text}" for name, text in dictionary.FILES.items()],
        "",
        "Every column's type, units and meaning are in `data_dictionary.md`. A live study's export is read table "
        "by table, so a participant active during the export may appear in one table's state and a later one's in "
        "another; export a closed study for publication.",
        "",
    ]
    return "\n".join(lines)


def write_zip(folder: Path, zip_path: Path, *, name: str) -> None:
    part = zip_path.with_name(zip_path.name + ".part")
    with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6, allowZip64=True) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            # Parquet is compressed already; deflating it again costs time for nothing.
            kind = zipfile.ZIP_STORED if path.suffix == ".parquet" else zipfile.ZIP_DEFLATED
            zf.write(path, arcname=f"{name}/{path.relative_to(folder).as_posix()}", compress_type=kind)
    os.replace(part, zip_path)


# --- The export job ---------------------------------------------------------------------------------------------


def export_request(
    *,
    study: Study,
    by,
    formats: str | Iterable[str] = "all",
    include_external_ids: bool = False,
    include_pilots: bool = False,
) -> Job:
    """Create an export job and enqueue it once this transaction commits (eager on the embedded default)."""
    check_allowed(study=study, include_external_ids=include_external_ids)
    formats = normalise_formats(formats)
    job = Job.objects.create(
        kind=Job.Kind.EXPORT,
        study=study,
        created_by=by,
        message="Queued",
        params={
            "formats": list(formats),
            "include_external_ids": include_external_ids,
            "include_pilots": include_pilots,
        },
    )
    from oversight.exports.tasks import run_export

    enqueue_on_commit(run_export, job.pk, on_failure=lambda: job.fail(NOT_QUEUED), background=True)
    return job


def job_folder(job_id: int) -> Path:
    return export_dir() / f"job-{job_id}"


def export_job_run(*, job_id: int, now: datetime | None = None) -> bool:
    """Run an export job: write the zip under `export_dir()/job-<id>/`, then mark the job done with the file's
    path in `result` and an expiry time. Returns False when the job was not ours to run."""
    now = now or timezone.now()
    job = Job.objects.select_related("study").filter(pk=job_id, kind=Job.Kind.EXPORT).first()
    if job is None or not job.claim(stale_after=STALE_AFTER, now=now):
        return False
    params = job.params or {}

    def progress(done: int, total: int, message: str) -> None:
        job.set_progress(done=done, total=total, message=message)

    folder = job_folder(job_id)
    shutil.rmtree(folder, ignore_errors=True)  # a half-written file of an earlier, interrupted run
    name = export_name(job.study, now)
    try:
        result = export_study(
            study=job.study,
            formats=params.get("formats", "all"),
            include_external_ids=bool(params.get("include_external_ids")),
            include_pilots=bool(params.get("include_pilots")),
            zip_path=folder / f"{name}.zip",
            progress=progress,
            now=now,
        )
    except ExportError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        job.fail(str(exc))
        return True
    except Exception as exc:  # the job must not stay "running"
        shutil.rmtree(folder, ignore_errors=True)
        job.fail_unexpectedly(exc)
        return True
    finished = timezone.now()
    total = result.total_rows
    job.finish(
        Job.Status.DONE,
        message=f"Exported {total:,} rows",
        now=finished,
        done=total,
        total=total,
        expires_at=finished + timedelta(hours=ttl_hours()),
        result={
            "path": result.path.relative_to(export_dir()).as_posix(),
            "filename": result.path.name,
            "size": result.path.stat().st_size,
            "formats": list(result.formats),
            "row_counts": result.row_counts,
            "manifest_hash": result.meta.get("manifest_hash", ""),
            "include_pilots": result.meta.get("include_pilots", False),
            "include_external_ids": result.meta.get("include_external_ids", False),
        },
    )
    return True


def export_file(job: Job, *, now: datetime | None = None) -> Path | None:
    """The file of a finished, unexpired export job (for a download view), or None."""
    now = now or timezone.now()
    if job.kind != Job.Kind.EXPORT or job.status != Job.Status.DONE or not job.result.get("path"):
        return None
    if job.expires_at is not None and job.expires_at <= now:
        return None
    path = export_dir() / job.result["path"]
    return path if path.is_file() else None


def exports_cleanup(*, now: datetime | None = None) -> int:
    """Delete the files of expired export jobs (the job rows stay, marked expired) and leftovers of jobs that no
    longer exist or failed, older than the TTL. Returns how many folders were removed. Safe to run any time."""
    now = now or timezone.now()
    removed = 0
    for job in Job.objects.filter(kind=Job.Kind.EXPORT, expires_at__lte=now).only("pk", "result"):
        if (job.result or {}).get("expired"):
            continue
        folder = job_folder(job.pk)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        Job.objects.filter(pk=job.pk).update(
            result={**(job.result or {}), "expired": True}, message="Expired: the file was deleted"
        )
    root = export_dir()
    if root.is_dir():
        keep = set(
            Job.objects.filter(
                kind=Job.Kind.EXPORT, status__in=[Job.Status.QUEUED, Job.Status.RUNNING, Job.Status.DONE]
            )
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .values_list("pk", flat=True)
        )
        cutoff = now.timestamp() - ttl_hours() * 3600
        for folder in root.glob("job-*"):
            try:
                job_id = int(folder.name.removeprefix("job-"))
            except ValueError:
                continue
            if job_id not in keep and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed
