"""S3 for the platform's commands: the S3 channels stage-training copies into /opt/ml (File mode),
and the client both it and the model export (artifacts.py) use.

A channel `s3://bucket/prefix/` is staged as SageMaker stages an `S3Prefix` channel in File mode
(SageMaker Developer Guide, "How Amazon SageMaker AI provides training information"): every
object under the prefix, at its key relative to the prefix, under
`/opt/ml/input/data/<channel>/`. ListObjectsV2 is paginated (1,000 keys a page, S3 API
Reference); every channel is listed before anything is downloaded, so a missing or empty prefix,
a denied listing or data past `MLOPS_CHANNEL_MAX_BYTES` fail the run with nothing copied. Each
object is read with `If-Match` on the ETag it was listed with (an object replaced meanwhile is a
failure, not a mix of two datasets) and streamed to disk in 1 MiB chunks: nothing holds a whole
object in memory. A key ending in `/` (a console "folder") holds no file and is skipped.

botocore takes the task role's credentials from ECS's container credentials endpoint, the Region
from AWS_REGION (and follows a bucket in another Region), and `AWS_ENDPOINT_URL_S3` where one is
set (the tests' moto server). Every failure is one line naming the channel and the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_contract import Env, MlLayout

from .inputs import Refused, one_line, size_text

S3_SCHEME = "s3://"
DEFAULT_CHANNEL_MAX_BYTES = 10 << 30
"""10 GiB: what the S3 channels of a run may hold together. The channels land on the task's
ephemeral storage (Fargate's default is 20 GiB, the image's layers included)."""
CHUNK = 1 << 20

INPUT_CONFIG = {
    "TrainingInputMode": "File",
    "S3DistributionType": "FullyReplicated",
    "RecordWrapperType": "None",
}
"""inputdataconfig.json's entry for an S3 channel in File mode, as SageMaker writes one for a
channel whose request names no ContentType (the page's `validation` example): the platform has
no content type to pass on."""


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int
    etag: str


@dataclass
class Listing:
    """One channel's objects, as ListObjectsV2 gave them."""

    name: str
    bucket: str
    prefix: str
    objects: list[S3Object] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}"

    def refused(self, reason: str) -> Refused:
        return Refused(f"{Env.CHANNELS}: channel {self.name!r} ({self.uri}): {reason}")


def is_s3(value: object) -> bool:
    return isinstance(value, str) and value.startswith(S3_SCHEME)


def location(name: str, value: str) -> tuple[str, str]:
    """(bucket, prefix) of a channel's `s3://bucket/prefix/`: a bucket and a prefix that is
    empty or ends with `/` (the stack's settings check the rest, components/settings/
    channels.py)."""
    bucket, slash, prefix = value[len(S3_SCHEME) :].partition("/")
    if not bucket or not slash or (prefix and not prefix.endswith("/")):
        raise Refused(
            f"{Env.CHANNELS}: channel {name!r} -> {value!r}: an S3 channel is "
            "s3://bucket/prefix/ (the prefix ending with '/') or s3://bucket/"
        )
    return bucket, prefix


def client(connect_timeout: int = 10, read_timeout: int = 60) -> Any:
    """An S3 client with the task role's credentials, standard retries and bounded waits."""
    import botocore.config
    import botocore.session

    config = botocore.config.Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    return botocore.session.get_session().create_client(
        "s3", region_name=os.environ.get(Env.AWS_REGION) or None, config=config
    )


def reason(exc: Exception) -> str:
    """A botocore error as one line: S3's error code and message, or what went wrong on the way."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        why = {
            "AccessDenied": "access denied: the task role may not read it",
            "NoSuchBucket": "the bucket does not exist",
            "PreconditionFailed": "the object changed while the channel was staged",
        }.get(str(code), one_line(str(error.get("Message") or exc), 300))
        return f"{why} ({code}, {exc.operation_name})"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials (the task role's, from ECS)"
    return one_line(str(exc), 300)


def channel_max_bytes() -> int:
    raw = os.environ.get(Env.CHANNEL_MAX_BYTES, "")
    if not raw:
        return DEFAULT_CHANNEL_MAX_BYTES
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20 and int(raw) > 0):
        raise Refused(
            f"{Env.CHANNEL_MAX_BYTES}={raw[:40]!r} must be a positive whole number of bytes "
            f"(default {DEFAULT_CHANNEL_MAX_BYTES}, 10 GiB)"
        )
    return int(raw)


def _pages(s3: Any, listing: Listing) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        request: dict[str, Any] = {"Bucket": listing.bucket, "Prefix": listing.prefix}
        if token:
            request["ContinuationToken"] = token
        page = s3.list_objects_v2(**request)
        yield page
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return


def list_channels(channels: dict[str, str], limit: int, s3: Any = None) -> list[Listing]:
    """Every S3 channel's objects, listed before anything is downloaded; Refused naming the
    channel for a listing S3 refuses, a missing or empty prefix, and more than `limit` bytes in
    all (the listing stops there)."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = s3 or client()
    listings = []
    total = 0
    for name, value in channels.items():
        listing = Listing(name, *location(name, value))
        try:
            for page in _pages(s3, listing):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/"):
                        continue  # a "folder" marker: no file to stage
                    listing.objects.append(S3Object(key, int(item["Size"]), item["ETag"]))
                    total += int(item["Size"])
                if total > limit:
                    raise listing.refused(
                        f"the S3 channels hold more than {Env.CHANNEL_MAX_BYTES}={limit} "
                        f"({size_text(limit)}) in all; nothing was downloaded"
                    )
        except (ClientError, BotoCoreError) as exc:
            raise listing.refused(reason(exc)) from None
        if not listing.objects:
            raise listing.refused("no objects under this prefix (it is missing or empty)")
        listings.append(listing)
    return listings


def _target(listing: Listing, root: Path, key: str) -> Path:
    """Where an object lands: its key relative to the prefix, under the channel's directory."""
    parts = key[len(listing.prefix) :].split("/")
    if any(part in ("", ".", "..") for part in parts) or "\0" in key:
        raise listing.refused(
            f"the key {one_line(key, 200)!r} has an empty, '.' or '..' part: it cannot be a "
            "file under the channel's directory"
        )
    return root.joinpath(*parts)


def download(listings: list[Listing], layout: MlLayout, s3: Any = None) -> int:
    """Every listed object into `/opt/ml/input/data/<channel>/`, streamed; the files written."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = s3 or client()
    files = 0
    for listing in listings:
        root = layout.channel(listing.name)
        root.mkdir(parents=True, exist_ok=True)
        for item in listing.objects:
            path = _target(listing, root, item.key)
            try:
                _fetch(s3, listing.bucket, item, path)
            except (ClientError, BotoCoreError) as exc:
                raise listing.refused(f"{one_line(item.key, 200)}: {reason(exc)}") from None
            except OSError as exc:
                raise listing.refused(
                    f"{one_line(item.key, 200)} could not be written to {path}: "
                    f"{exc.strerror or exc}"
                ) from None
            files += 1
    for dirpath, _, _ in os.walk(layout.input_data):
        os.chmod(dirpath, 0o755)
    return files


def _fetch(s3: Any, bucket: str, item: S3Object, path: Path) -> None:
    response = s3.get_object(Bucket=bucket, Key=item.key, IfMatch=item.etag)
    body = response["Body"]
    written = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "wb") as out:
            for chunk in body.iter_chunks(CHUNK):
                written += len(chunk)
                if written > item.size:
                    break
                out.write(chunk)
    finally:
        body.close()
    if written != item.size:
        raise OSError(f"read {written} bytes of an object listed with {item.size}")
    os.chmod(path, 0o644)
