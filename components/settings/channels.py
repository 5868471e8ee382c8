"""`workload.training.channels`: where each channel's data comes from, a store directory or an S3
prefix, and the KMS key its S3 objects are encrypted with.

A channel is a directory relative to the store (`datasets/digits`) or an S3 prefix
(`s3://bucket/prefix/`), as a SageMaker channel's `S3Uri` with `S3DataType: S3Prefix` names one
(SageMaker API Reference, "S3DataSource"). The platform's `stage-training` copies either into
`/opt/ml/input/data/<channel>/` (File mode); for an S3 prefix the training task role may list
exactly that prefix and read exactly its objects (documents/channels.py).

What an S3 channel may be, and why:

- the bucket follows S3's general purpose bucket naming rules (S3 User Guide, "General purpose
  bucket naming rules"): 3-63 characters of lowercase letters, digits, `.` and `-`, starting and
  ending with a letter or digit, no `..`, not an IP address, none of the reserved prefixes and
  suffixes (`xn--`, `sthree-`, `amzn-s3-demo-`; `-s3alias`, `--ol-s3`, `.mrap`, `--x-s3`,
  `--table-s3`): an access point alias or a directory bucket is not a bucket here;
- the prefix is empty (the whole bucket) or ends with `/`, as SageMaker recommends for a channel
  that is a folder (without it `s3://b/train` would also take `s3://b/train-old/`); its parts are
  neither empty nor `.` or `..` (each becomes a directory under the channel);
- no `*`, `?` or `$` in it: the IAM statements name the prefix in an ARN and a condition, where
  `*` and `?` are wildcards and `${...}` a policy variable, so such a prefix would grant more than
  it names (IAM User Guide, "IAM JSON policy elements: Resource");
- printable, at most 1024 bytes of UTF-8 with the key that follows (S3's key length limit).

S3 access point ARNs are not accepted (yet): a bucket's own name only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.settings._section import fail

S3_SCHEME = "s3://"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_PREFIX_FORBIDDEN = set("*?$")
MAX_PREFIX_BYTES = 1024
KMS_KEY_ARN = re.compile(
    r"arn:aws[a-z-]*:kms:(?P<region>[a-z]{2}(-[a-z]+)+-\d):\d{12}:key/[A-Za-z0-9-]{1,128}"
)
"""A KMS key by its ARN (an alias is not a key: IAM grants kms:Decrypt on the key's ARN)."""


@dataclass(frozen=True)
class S3Prefix:
    """An S3 channel: a bucket and a key prefix (empty, or ending with `/`)."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}"

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}"

    @property
    def objects_arn(self) -> str:
        """Every object under the prefix (`bucket/prefix/*`, or `bucket/*` for the bucket)."""
        return f"{self.bucket_arn}/{self.prefix}*"


def s3_prefix(value: str) -> S3Prefix | None:
    """The S3 prefix a channel's value names; None for a store directory. The value is one the
    parser accepted (`parse_channel`)."""
    if not value.startswith(S3_SCHEME):
        return None
    bucket, _, prefix = value[len(S3_SCHEME) :].partition("/")
    return S3Prefix(bucket, prefix)


def s3_channels(channels: Mapping[str, str]) -> dict[str, S3Prefix]:
    """The channels that are S3 prefixes, by name."""
    return {name: found for name, value in channels.items() if (found := s3_prefix(value))}


def _bucket_problem(bucket: str) -> str | None:
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        return (
            "3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or "
            "digit, no '..'"
        )
    try:
        ipaddress.IPv4Address(bucket)
    except ValueError:
        pass
    else:
        return "not an IP address"
    if bucket.startswith(_BUCKET_PREFIXES) or bucket.endswith(_BUCKET_SUFFIXES):
        return (
            f"not starting with {', '.join(_BUCKET_PREFIXES)} or ending with "
            f"{', '.join(_BUCKET_SUFFIXES)} (access point aliases and directory buckets are "
            "not channels here)"
        )
    return None


def _prefix_problem(prefix: str) -> str | None:
    if not prefix:
        return None
    if not prefix.endswith("/"):
        return "a prefix ends with '/', so s3://bucket/train/ does not also take train-old/"
    if not prefix.isprintable() or "\\" in prefix:
        return "printable characters, no backslash"
    if _PREFIX_FORBIDDEN & set(prefix):
        return (
            "no '*', '?' or '$': the prefix is named in IAM statements, where they are "
            "wildcards and policy variables"
        )
    if any(part in ("", ".", "..") for part in prefix[:-1].split("/")):
        return "no empty, '.' or '..' parts between the '/'s (each part becomes a directory)"
    if len(prefix.encode()) > MAX_PREFIX_BYTES:
        return f"at most {MAX_PREFIX_BYTES} bytes"
    return None


def _store_dir(key: str, raw: str) -> str:
    parts = raw.split("/")
    if raw.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise fail(
            key,
            raw,
            "a directory relative to the store (e.g. datasets/train) or an S3 prefix "
            "(s3://bucket/prefix/)",
        )
    return raw


def parse_channel(key: str, raw: Any) -> str:
    """One channel's value: a store-relative directory or `s3://bucket/prefix/`, refused naming
    `key` otherwise."""
    if not isinstance(raw, str) or not raw:
        raise fail(
            key,
            raw,
            "a directory relative to the store (e.g. datasets/train) or s3://bucket/prefix/",
        )
    if "://" not in raw:
        return _store_dir(key, raw)
    if not raw.startswith(S3_SCHEME):
        raise fail(key, raw, "the only URI a channel may name is an S3 prefix, s3://bucket/prefix/")
    bucket, slash, prefix = raw[len(S3_SCHEME) :].partition("/")
    problem = _bucket_problem(bucket)
    if problem is not None:
        raise fail(key, raw, f"the bucket name must be {problem}")
    if not slash:
        raise fail(key, raw, f"name the bucket with a '/' after it: s3://{bucket}/ or a prefix")
    problem = _prefix_problem(prefix)
    if problem is not None:
        raise fail(key, raw, f"s3://bucket/prefix/ with {problem}")
    return raw


def parse_kms_key(key: str, raw: Any, channels: Mapping[str, str]) -> str:
    """`workload.training.channels_kms_key_arn`: "" or the KMS key ARN the S3 channels' objects
    are encrypted with (SSE-KMS); only with an S3 channel."""
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str) or not KMS_KEY_ARN.fullmatch(raw):
        raise fail(key, raw, 'a KMS key ARN, arn:aws:kms:REGION:ACCOUNT:key/ID, or ""')
    if not s3_channels(channels):
        raise fail(key, raw, 'it decrypts S3 channels, and no channel is s3://; leave it ""')
    return raw


def kms_key_region(arn: str) -> str:
    match = KMS_KEY_ARN.fullmatch(arn)
    if match is None:
        raise ValueError(f"{arn!r} is not a KMS key ARN")
    return match["region"]
