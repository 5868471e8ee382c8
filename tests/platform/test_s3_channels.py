"""stage-training with S3 channels (`s3://bucket/prefix/` in MLOPS_CHANNELS), as the container
runs it, against moto's S3 server: every object under the prefix staged at its key relative to
the prefix, inputdataconfig.json as SageMaker writes it for an S3 channel, the baseline of the
staged copy, and each refusal (a missing prefix, a missing bucket, a denied read, too much data,
a key that is no file name) one line naming the channel and the reason, with nothing staged."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.platform.conftest import PLATFORM, Env
from tests.platform.moto_s3 import S3, client

sys.path.insert(0, str(PLATFORM))
from mlops_platform import s3 as platform_s3

# slow: each test starts moto's S3 server and runs the platform's command in a child process
pytestmark = pytest.mark.slow

ROWS = "\n".join(
    ",".join(str((i * 7 + j) % 17) for j in range(64)) + f",{i % 10}" for i in range(40)
)


def _stage(env: Env, s3: S3, channels: dict[str, str], **extra: str) -> Any:
    return env.run(
        "stage-training",
        RUN_ID="r1",
        MLOPS_CHANNELS=json.dumps(channels),
        **s3.environ(**extra),
    )


def test_every_object_under_the_prefix_is_staged_at_its_relative_key(
    env: Env, s3: S3, tmp_path: Path
) -> None:
    bucket = s3.bucket("channels-staged")
    big = bytes(range(256)) * 12_000  # 3 MB: more than one 1 MiB chunk
    objects = {
        "digits/train.csv": ROWS.encode(),
        "digits/more/part-0.csv": ROWS.encode(),
        "digits/blob.bin": big,
        "digits/folder/": b"",  # a console "folder": no file
        "digits-old/train.csv": b"not this channel",
        "other/x.csv": b"nor this",
    }
    for key, body in objects.items():
        s3.client.put_object(Bucket=bucket, Key=key, Body=body)
    (env.store / "datasets" / "local").mkdir(parents=True)
    (env.store / "datasets" / "local" / "a.txt").write_text("store")

    staged = _stage(env, s3, {"train": f"s3://{bucket}/digits/", "extra": "datasets/local"})

    assert staged.returncode == 0, staged.stderr
    assert "2 channel(s), 4 file(s)" in staged.stdout, staged.stdout
    train = env.ml / "input" / "data" / "train"
    found = sorted(p.relative_to(train).as_posix() for p in train.rglob("*") if p.is_file())
    assert found == ["blob.bin", "more/part-0.csv", "train.csv"]
    assert (train / "blob.bin").read_bytes() == big
    assert (train / "train.csv").read_bytes() == ROWS.encode()
    assert (env.ml / "input" / "data" / "extra" / "a.txt").read_text() == "store"
    config = json.loads((env.ml / "input" / "config" / "inputdataconfig.json").read_text())
    # As SageMaker writes it for a channel whose request names no ContentType.
    assert config["train"] == {
        "TrainingInputMode": "File",
        "S3DistributionType": "FullyReplicated",
        "RecordWrapperType": "None",
    }
    assert config["extra"]["ContentType"] == "application/octet-stream"
    # The baseline describes what was staged: the S3 channel's CSV rows, both files.
    summary = json.loads((env.models / ".r1.baseline" / "summary.json").read_text())
    assert summary["channels"]["train"]["rows"] == 80, summary
    assert summary["channels"]["train"]["features"] == 65, summary
    assert (env.models / ".r1.baseline" / "baseline" / "train" / "statistics.json").is_file()


def test_the_whole_bucket_is_a_channel(env: Env, s3: S3) -> None:
    bucket = s3.bucket("channels-whole")
    s3.client.put_object(Bucket=bucket, Key="a/b.csv", Body=b"1,2\n")
    staged = _stage(env, s3, {"train": f"s3://{bucket}/"})
    assert staged.returncode == 0, staged.stderr
    assert (env.ml / "input" / "data" / "train" / "a" / "b.csv").read_bytes() == b"1,2\n"


def _refused(result: Any) -> str:
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_missing_prefix_fails_naming_the_channel(env: Env, s3: S3) -> None:
    bucket = s3.bucket("channels-missing")
    s3.client.put_object(Bucket=bucket, Key="digits-old/train.csv", Body=b"1")
    (env.ml / "input" / "data" / "train").mkdir(parents=True)
    (env.ml / "input" / "data" / "train" / "earlier.csv").write_text("an earlier attempt's")

    line = _refused(_stage(env, s3, {"train": f"s3://{bucket}/digits/"}))

    assert line == (
        f"stage-training: MLOPS_CHANNELS: channel 'train' (s3://{bucket}/digits/): no objects "
        "under this prefix (it is missing or empty)"
    )
    # Listed before anything was cleared or copied.
    assert (env.ml / "input" / "data" / "train" / "earlier.csv").exists()


def test_a_missing_bucket_fails_naming_the_channel(env: Env, s3: S3) -> None:
    line = _refused(_stage(env, s3, {"train": "s3://no-such-bucket-here/digits/"}))
    assert "channel 'train' (s3://no-such-bucket-here/digits/): the bucket does not exist" in line
    assert "(NoSuchBucket, ListObjectsV2)" in line


def test_more_than_the_limit_is_refused_before_anything_is_downloaded(env: Env, s3: S3) -> None:
    bucket = s3.bucket("channels-limit")
    for index in range(3):
        s3.client.put_object(Bucket=bucket, Key=f"d/{index}.bin", Body=b"x" * 1000)

    line = _refused(_stage(env, s3, {"train": f"s3://{bucket}/d/"}, MLOPS_CHANNEL_MAX_BYTES="2500"))

    assert "channel 'train'" in line and "MLOPS_CHANNEL_MAX_BYTES=2500" in line, line
    assert "nothing was downloaded" in line
    assert not (env.ml / "input" / "data" / "train").exists()
    bad = _refused(_stage(env, s3, {"train": f"s3://{bucket}/d/"}, MLOPS_CHANNEL_MAX_BYTES="0"))
    assert "MLOPS_CHANNEL_MAX_BYTES='0' must be a positive whole number" in bad


@pytest.mark.parametrize(
    ("index", "key"), enumerate(["d/../escape.csv", "d/a//b.csv", "d/./a.csv"])
)
def test_a_key_that_is_no_file_name_under_the_channel_is_refused(
    env: Env, s3: S3, index: int, key: str
) -> None:
    bucket = s3.bucket(f"channels-key-{index}")
    s3.client.put_object(Bucket=bucket, Key=key, Body=b"1")
    line = _refused(_stage(env, s3, {"train": f"s3://{bucket}/d/"}))
    assert f"channel 'train' (s3://{bucket}/d/): the key {key!r}" in line, line
    assert not (env.ml / "input" / "data" / "escape.csv").exists()


def test_a_denied_read_fails_naming_the_channel(env: Env, enforcing_s3: tuple[str, int]) -> None:
    """The task role may list the prefix but not read its objects: moto's server enforcing IAM
    (identity policies: moto does not evaluate bucket policies) answers GetObject AccessDenied."""
    endpoint, setup = enforcing_s3
    admin = client(endpoint)
    admin.create_bucket(Bucket="denied")
    admin.put_object(Bucket="denied", Key="digits/train.csv", Body=b"1,2\n")
    admin.put_object(Bucket="denied", Key="digits/more.csv", Body=b"3,4\n")
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    iam.create_user(UserName="task-role")
    iam.put_user_policy(
        UserName="task-role",
        PolicyName="list-only",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"},
                    {
                        "Effect": "Deny",
                        "Action": "s3:GetObject",
                        "Resource": "arn:aws:s3:::denied/*",
                    },
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName="task-role")["AccessKey"]
    assert setup == 6  # the six requests above ran unauthenticated; from here IAM decides
    result = env.run(
        "stage-training",
        RUN_ID="r1",
        MLOPS_CHANNELS=json.dumps({"train": "s3://denied/digits/"}),
        **S3(endpoint, None).environ(
            AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"]
        ),
    )

    line = _refused(result)
    assert line.startswith(
        "stage-training: MLOPS_CHANNELS: channel 'train' (s3://denied/digits/): digits/"
    ), line
    assert "access denied: the task role may not read it (AccessDenied, GetObject)" in line


# -- in-process: paging and streaming, with a client that records what it was asked


class _Pages:
    """ListObjectsV2 in pages of `size` keys, as S3 pages at 1,000."""

    def __init__(self, keys: list[tuple[str, int]], size: int) -> None:
        self.keys, self.size, self.calls = keys, size, []

    def list_objects_v2(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        start = int(request.get("ContinuationToken", 0))
        page = self.keys[start : start + self.size]
        more = start + self.size < len(self.keys)
        answer: dict[str, Any] = {
            "Contents": [{"Key": k, "Size": s, "ETag": '"e"'} for k, s in page],
            "IsTruncated": more,
        }
        if more:
            answer["NextContinuationToken"] = str(start + self.size)
        return answer


def test_listing_follows_every_continuation_token() -> None:
    keys = [(f"p/{i:04}.csv", 1) for i in range(2_345)]
    pages = _Pages(keys, 1000)
    (listing,) = platform_s3.list_channels({"train": "s3://b/p/"}, 10_000, pages)
    assert len(listing.objects) == 2_345
    assert [c.get("ContinuationToken") for c in pages.calls] == [None, "1000", "2000"]


def test_listing_stops_at_the_page_that_passes_the_limit() -> None:
    pages = _Pages([(f"p/{i}", 10) for i in range(5_000)], 1000)
    with pytest.raises(platform_s3.Refused, match="more than MLOPS_CHANNEL_MAX_BYTES=15000"):
        platform_s3.list_channels({"train": "s3://b/p/"}, 15_000, pages)
    assert len(pages.calls) == 2


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data, self.asked, self.closed = data, [], False

    def iter_chunks(self, size: int) -> Any:
        self.asked.append(size)
        for start in range(0, len(self.data), size):
            yield self.data[start : start + size]

    def close(self) -> None:
        self.closed = True


def test_an_object_is_streamed_to_disk_in_chunks(tmp_path: Path) -> None:
    data = b"0123456789" * 300_000
    body = _Body(data)
    requests: list[dict[str, Any]] = []

    class Client:
        def get_object(self, **request: Any) -> dict[str, Any]:
            requests.append(request)
            return {"Body": body}

    item = platform_s3.S3Object("p/a.bin", len(data), '"etag"')
    platform_s3._fetch(Client(), "b", item, tmp_path / "a.bin")

    assert (tmp_path / "a.bin").read_bytes() == data
    assert body.asked == [platform_s3.CHUNK] and body.closed
    # Read as listed: an object replaced since is refused by S3 (412), not mixed in.
    assert requests == [{"Bucket": "b", "Key": "p/a.bin", "IfMatch": '"etag"'}]
    short = platform_s3.S3Object("p/a.bin", len(data) + 1, '"etag"')
    body.asked.clear()
    with pytest.raises(OSError, match="read 3000000 bytes of an object listed with 3000001"):
        platform_s3._fetch(Client(), "b", short, tmp_path / "b.bin")
