"""A model that became current, exported as SageMaker's model artifact to the stack's bucket.

`gate` (a stack without a rollout) and `finish-rollout` (a rollout that succeeded) call
`export_current` once models/CURRENT names the run; `export-model` exports the current run again
by hand. With `MLOPS_ARTIFACTS_BUCKET` set, it writes, in the bucket:

    models/<RUN_ID>/model.tar.gz   the run's model files at the archive's root, gzip (SageMaker's
                                   layout: CreateModel's ModelDataUrl, "a single gzip compressed
                                   tar archive"), without the platform's records
    models/<RUN_ID>/report.json    what collect-training recorded
    models/<RUN_ID>/decision.json  the gate's decision, with the export's own record

The archive is streamed: tarfile writes gzip into a writer that sends 8 MiB parts as a
multipart upload (a smaller archive goes as one PutObject), so memory holds one part, never the
model; an upload that fails is aborted. Then the newest `MLOPS_ARTIFACTS_KEEP` runs under
`models/` are kept and the others' objects deleted: in the versioned bucket a delete is a delete
marker, and the bucket's lifecycle rule removes the old versions for good after its days.

An export never undoes a promotion. What became of it is recorded in the run's decision.json
(`artifact: {status: exported | failed, uri, ...}`); a failure is one line on stderr starting
with `ERROR`, and the command still exits as its decision says (docs/s3.md says why).
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_contract import DECISION_FILE, MODEL_ARCHIVE, MODELS, RECORDS, REPORT_FILE, Env

from . import s3
from .files import give_to_store_owner, read_current, read_record, store_gate_lock, walk_files
from .files import write_json as write_record
from .inputs import Refused, one_line, size_text, store_dir

PART_BYTES = 8 << 20
"""Multipart part size: above S3's 5 MiB minimum for every part but the last."""
DEFAULT_KEEP = 10
DELETE_BATCH = 1000
"""DeleteObjects takes at most 1,000 keys a request (S3 API Reference)."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _keep() -> int:
    raw = os.environ.get(Env.ARTIFACTS_KEEP, "") or str(DEFAULT_KEEP)
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 1000):
        raise Refused(f"{Env.ARTIFACTS_KEEP}={raw[:40]!r} must be a whole number 1..1000")
    return int(raw)


class _PartWriter(io.RawIOBase):
    """A write-only stream into one S3 object: multipart once it passes one part, a single
    PutObject otherwise; its bytes counted and hashed on the way."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._buffer = bytearray()
        self._upload: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.version_id: str | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._buffer += chunk
        self.size += len(chunk)
        self.sha256.update(chunk)
        while len(self._buffer) >= PART_BYTES:
            self._send(bytes(self._buffer[:PART_BYTES]))
            del self._buffer[:PART_BYTES]
        return len(chunk)

    def _send(self, part: bytes) -> None:
        if self._upload is None:
            self._upload = self._client.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType="application/gzip"
            )["UploadId"]
        number = len(self._parts) + 1
        answer = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload, PartNumber=number, Body=part
        )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def finish(self) -> None:
        if self._upload is None:
            answer = self._client.put_object(
                Bucket=self._bucket,
                Key=self._key,
                Body=bytes(self._buffer),
                ContentType="application/gzip",
            )
        else:
            if self._buffer:
                self._send(bytes(self._buffer))
            answer = self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload,
                MultipartUpload={"Parts": self._parts},
            )
        self._buffer.clear()
        self.version_id = answer.get("VersionId")

    def abort(self) -> None:
        if self._upload is not None:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload
            )


def model_files(run_dir: Path) -> list[Path]:
    """The run's model files, as stage-serving hands them to a server: every regular file but
    the platform's records (report.json, decision.json, baseline/)."""
    what = f"{MODELS}/{run_dir.name}"
    return [p for p in walk_files(run_dir, what) if p.relative_to(run_dir).parts[0] not in RECORDS]


def write_archive(run_dir: Path, out: Any) -> int:
    """The model files as a gzip tar with the files at its root, streamed into `out`; how many
    files. Owners and modes are normalised (root, 0644): the archive carries the model only."""
    files = model_files(run_dir)
    with tarfile.open(fileobj=out, mode="w|gz", format=tarfile.PAX_FORMAT) as archive:
        for path in files:
            stat = path.lstat()
            info = tarfile.TarInfo(path.relative_to(run_dir).as_posix())
            info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o644
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                archive.addfile(info, handle)
    return len(files)


def _upload(client: Any, bucket: str, run_dir: Path, rid: str) -> dict[str, Any]:
    key = f"{MODELS}/{rid}/{MODEL_ARCHIVE}"
    writer = _PartWriter(client, bucket, key)
    try:
        files = write_archive(run_dir, writer)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    client.put_object(
        Bucket=bucket,
        Key=f"{MODELS}/{rid}/{REPORT_FILE}",
        Body=(run_dir / REPORT_FILE).read_bytes(),
        ContentType="application/json",
    )
    return {
        "status": "exported",
        "uri": f"s3://{bucket}/{key}",
        "version_id": writer.version_id,
        "bytes": writer.size,
        "sha256": writer.sha256.hexdigest(),
        "files": files,
        "exported_at": _now(),
    }


def prune(client: Any, bucket: str, keep: int, rid: str) -> list[str]:
    """Delete the objects of every run under models/ but the newest `keep` (by their newest
    object, then by run id; `rid` is always kept); the runs deleted."""
    latest: dict[str, Any] = {}
    keys: dict[str, list[str]] = {}
    token = None
    while True:
        request: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{MODELS}/"}
        if token:
            request["ContinuationToken"] = token
        page = client.list_objects_v2(**request)
        for item in page.get("Contents", []):
            run = item["Key"].split("/")[1]
            keys.setdefault(run, []).append(item["Key"])
            latest[run] = max(latest.get(run, item["LastModified"]), item["LastModified"])
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            break
    # LastModified is to the second: runs exported within one second tie, and the run id (a
    # pipeline's starts with its UTC start time) orders them.
    order = sorted(
        (run for run in latest if run != rid), key=lambda run: (latest[run], run), reverse=True
    )
    old = order[keep - 1 :]
    doomed = [key for run in old for key in keys[run]]
    for start in range(0, len(doomed), DELETE_BATCH):
        batch = doomed[start : start + DELETE_BATCH]
        answer = client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
        errors = answer.get("Errors") or []
        if errors:
            first = errors[0]
            raise Refused(f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}")
    return old


def _record(store: Path, rid: str, record: dict[str, Any]) -> None:
    """The export's record into models/<rid>/decision.json, under the gate lock."""
    models = store / MODELS
    path = models / rid / DECISION_FILE
    with store_gate_lock(store, models):
        decision = read_record(path, f"{MODELS}/{rid}/{DECISION_FILE}") or {}
        decision["artifact"] = record
        write_record(path, decision)
        give_to_store_owner(path, store)


def export_current(store: Path, rid: str, command: str, again: bool = False) -> str:
    """Export run `rid` (which models/CURRENT names) to the artifact bucket; what the command's
    line adds. Nothing without MLOPS_ARTIFACTS_BUCKET; nothing when its decision records an
    export already, unless `again`. Never raises for S3: a failure is recorded and printed."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = os.environ.get(Env.ARTIFACTS_BUCKET, "")
    if not bucket:
        return ""
    keep = _keep()
    run_dir = store / MODELS / rid
    earlier = (read_record(run_dir / DECISION_FILE, f"{MODELS}/{rid}/{DECISION_FILE}") or {}).get(
        "artifact"
    )
    if not again and isinstance(earlier, dict) and earlier.get("status") == "exported":
        return f"; exported earlier to {earlier.get('uri')}"
    uri = f"s3://{bucket}/{MODELS}/{rid}/{MODEL_ARCHIVE}"
    client = s3.client()
    try:
        record = _upload(client, bucket, run_dir, rid)
        _record(store, rid, record)
        client.put_object(
            Bucket=bucket,
            Key=f"{MODELS}/{rid}/{DECISION_FILE}",
            Body=(run_dir / DECISION_FILE).read_bytes(),
            ContentType="application/json",
        )
    except (ClientError, BotoCoreError, OSError, Refused) as exc:
        why = s3.reason(exc) if isinstance(exc, ClientError | BotoCoreError) else str(exc)
        _record(store, rid, {"status": "failed", "uri": uri, "reason": why, "failed_at": _now()})
        print(
            f"{command}: ERROR: run {rid} is current but its model was NOT exported to {uri}: "
            f"{one_line(why)}; recorded in {MODELS}/{rid}/{DECISION_FILE}; export it again with "
            "`python -m mlops_platform export-model` in this task definition",
            file=sys.stderr,
            flush=True,
        )
        return f"; NOT exported to {uri} ({one_line(why, 200)})"
    note = f"; exported {uri} ({size_text(record['bytes'])})"
    try:
        deleted = prune(client, bucket, keep, rid)
    except (ClientError, BotoCoreError, Refused) as exc:
        why = s3.reason(exc) if isinstance(exc, ClientError | BotoCoreError) else str(exc)
        print(
            f"{command}: WARNING: older runs under s3://{bucket}/{MODELS}/ were not deleted: "
            f"{one_line(why)}",
            file=sys.stderr,
            flush=True,
        )
        return note + f"; older runs not deleted ({one_line(why, 200)})"
    return note + (f"; {len(deleted)} older run(s) deleted, {keep} kept" if deleted else "")


def export_model() -> str:
    """`export-model`: the run models/CURRENT names, exported (again) to the artifact bucket."""
    store = store_dir()
    if not os.environ.get(Env.ARTIFACTS_BUCKET):
        raise Refused(f"{Env.ARTIFACTS_BUCKET} is not set: the stack has no artifact bucket")
    rid = read_current(store / MODELS)
    if rid is None:
        raise Refused("no promoted model yet (models/CURRENT does not exist): nothing to export")
    note = export_current(store, rid, "export-model", again=True)
    if "NOT exported" in note:
        raise Refused(f"run {rid}{note.removeprefix(';')}")
    return f"run {rid}{note}"
