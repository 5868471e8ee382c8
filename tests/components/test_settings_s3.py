"""S3 in the stack config: `workload.training.channels` naming an S3 prefix (and the KMS key of
its objects), and `mlops:artifacts`, the bucket the platform exports each current model to. Every
bad value is refused naming the key, the value and what is allowed."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest

from components.settings.artifacts import ArtifactsSettings
from components.settings.channels import S3Prefix, s3_channels, s3_prefix
from components.settings.decisions import decide
from components.settings.stack import parse

KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SAGEMAKER = {
    "contract": "sagemaker",
    "image": {"build": {"context": "examples/digits"}},
    "training": {"channels": {"train": "s3://my-data/digits/train/"}},
    "objective": {"key": "accuracy"},
}


def _workload(**training: Any) -> dict[str, Any]:
    raw = copy.deepcopy(SAGEMAKER)
    raw["training"].update(training)
    return raw


def test_a_channel_may_name_an_s3_prefix_or_the_whole_bucket() -> None:
    channels = {
        "train": "s3://my-data/digits/train/",
        "all": "s3://my.data-2/",
        "local": "datasets/validation",
    }
    spec = parse({"workload": _workload(channels=channels)}).workload.training
    assert dict(spec.channels) == channels
    assert s3_channels(spec.channels) == {
        "train": S3Prefix("my-data", "digits/train/"),
        "all": S3Prefix("my.data-2", ""),
    }
    assert s3_prefix("datasets/validation") is None
    train = s3_channels(spec.channels)["train"]
    assert train.objects_arn == "arn:aws:s3:::my-data/digits/train/*"
    assert train.bucket_arn == "arn:aws:s3:::my-data" and train.uri == channels["train"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("s3://my-data/digits", "a prefix ends with '/'"),
        ("s3://my-data", "name the bucket with a '/' after it"),
        ("s3://My-Data/x/", "3-63 lowercase letters"),
        ("s3://ab/x/", "3-63 lowercase letters"),
        ("s3://my..data/x/", "no '..'"),
        ("s3://192.168.1.1/x/", "not an IP address"),
        ("s3://xn--data/x/", "not starting with xn--"),
        ("s3://data-xyz-s3alias/x/", "access point aliases"),
        ("s3://my-data/a*/", "no '*', '?' or '$'"),
        ("s3://my-data/${aws:username}/", "no '*', '?' or '$'"),
        ("s3://my-data/a//b/", "no empty, '.' or '..' parts"),
        ("s3://my-data/a/../b/", "no empty, '.' or '..' parts"),
        ("s3://my-data/a\tb/", "printable characters"),
        ("s3://my-data/" + "a" * 1030 + "/", "at most 1024 bytes"),
        ("https://my-data.s3.amazonaws.com/x/", "the only URI a channel may name"),
        ("/abs/path", "a directory relative to the store"),
        ("datasets/../etc", "a directory relative to the store"),
        ("", "a directory relative to the store"),
        (7, "a directory relative to the store"),
    ],
)
def test_a_bad_channel_is_refused_naming_the_key(value: Any, words: str) -> None:
    with pytest.raises(pulumi.RunError) as error:
        parse({"workload": _workload(channels={"train": value})})
    message = str(error.value)
    assert message.startswith(
        f"mlops:workload.training.channels.train: {value!r} is not allowed"
    ), message
    assert words in message, message


def test_the_channels_kms_key_is_an_arn_and_needs_an_s3_channel() -> None:
    spec = parse({"workload": _workload(channels_kms_key_arn=KEY)}).workload.training
    assert spec.channels_kms_key_arn == KEY
    assert parse({"workload": _workload()}).workload.training.channels_kms_key_arn == ""
    with pytest.raises(pulumi.RunError, match="a KMS key ARN, arn:aws:kms:REGION"):
        parse({"workload": _workload(channels_kms_key_arn="alias/data")})
    with pytest.raises(pulumi.RunError) as error:
        parse(
            {"workload": _workload(channels={"train": "datasets/digits"}, channels_kms_key_arn=KEY)}
        )
    assert str(error.value).startswith(
        "mlops:workload.training.channels_kms_key_arn: "
    ) and "no channel is s3://" in str(error.value)


def test_an_s3_channel_needs_the_sagemaker_contract() -> None:
    raw = _workload()
    raw["contract"] = "platform"
    with pytest.raises(pulumi.RunError, match="only the sagemaker contract stages channels"):
        parse({"workload": raw})


def test_artifacts_default_on_where_the_platform_promotes() -> None:
    digits = parse({"workload": _workload()})
    assert digits.artifacts == ArtifactsSettings(export=True, keep_last=10, noncurrent_days=30)
    assert decide(digits).artifacts == digits.artifacts
    # The forecaster gates itself: the platform exports nothing there.
    assert decide(parse({})).artifacts is None
    off = parse({"workload": _workload(), "artifacts": {"export": False}})
    assert decide(off).artifacts is None


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("export", "yes", "it must be true or false"),
        ("keep_last", 0, "it must be an integer from 1 to 1000"),
        ("keep_last", 1001, "it must be an integer from 1 to 1000"),
        ("noncurrent_days", 0, "it must be an integer from 1 to 3650"),
        ("noncurrent_days", 1.5, "it must be an integer"),
    ],
)
def test_a_bad_artifacts_value_is_refused(key: str, value: Any, words: str) -> None:
    with pytest.raises(pulumi.RunError) as error:
        parse({"workload": _workload(), "artifacts": {key: value}})
    assert str(error.value) == f"mlops:artifacts.{key}: {value!r} is not allowed; {words}"


def test_an_unknown_artifacts_key_names_the_nearest() -> None:
    with pytest.raises(pulumi.RunError, match="did you mean `keep_last`"):
        parse({"artifacts": {"keep_lst": 3}})


def test_export_written_out_where_the_workload_gates_itself_is_refused() -> None:
    with pytest.raises(pulumi.RunError) as error:
        parse({"artifacts": {"export": True}})
    assert str(error.value).startswith("mlops:artifacts.export: True is not allowed; ")
    assert "workload.steps.gate" in str(error.value)
    assert decide(parse({"artifacts": {"keep_last": 3}})).artifacts is None
