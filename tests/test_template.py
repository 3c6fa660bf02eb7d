"""template.yaml (AWS SAM) declares the same table and bucket the code creates locally."""

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings
from app.storage.resources import (
    DEAD_LETTER_RETENTION_SECONDS,
    MAX_RECEIVES,
    bucket_cors,
    bucket_lifecycle,
    bucket_notifications,
    queue_attributes,
    table_definition,
)

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub, ...) as {"!Ref": value}."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {f"!{suffix}": value}


_CfnLoader.add_multi_constructor("!", _tagged)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506
    return loaded


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return {name: resource["Properties"] for name, resource in template["Resources"].items()}


def _by_name(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {item[key]: item for item in items}


def test_table_matches_code(resources: dict[str, Any]) -> None:
    table, code = resources["ImagesTable"], table_definition(Settings())

    assert table["BillingMode"] == code["BillingMode"]
    assert table["KeySchema"] == code["KeySchema"]
    assert _by_name(table["AttributeDefinitions"], "AttributeName") == _by_name(
        code["AttributeDefinitions"], "AttributeName"
    )
    assert _by_name(table["GlobalSecondaryIndexes"], "IndexName") == _by_name(
        code["GlobalSecondaryIndexes"], "IndexName"
    )


def test_table_has_ttl_pitr_and_encryption(resources: dict[str, Any]) -> None:
    table = resources["ImagesTable"]

    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_bucket_lifecycle_matches_code(resources: dict[str, Any]) -> None:
    rules = _by_name(resources["ImagesBucket"]["LifecycleConfiguration"]["Rules"], "Id")
    # The S3 API and CloudFormation spell the same rule differently.
    expected = {}
    for rule in bucket_lifecycle()["Rules"]:
        cfn: dict[str, Any] = {"Id": rule["ID"], "Status": rule["Status"]}
        if "Tag" in rule["Filter"]:
            cfn["TagFilters"] = [rule["Filter"]["Tag"]]
        else:
            cfn["Prefix"] = rule["Filter"]["Prefix"]
        if "Expiration" in rule:
            cfn["ExpirationInDays"] = rule["Expiration"]["Days"]
        if "AbortIncompleteMultipartUpload" in rule:
            cfn["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
        expected[rule["ID"]] = cfn

    assert rules == expected


def test_bucket_cors_matches_code(resources: dict[str, Any]) -> None:
    (rule,) = resources["ImagesBucket"]["CorsConfiguration"]["CorsRules"]
    (code,) = bucket_cors(Settings())["CORSRules"]

    assert rule["AllowedOrigins"] == {"!Ref": "CorsOrigins"}
    assert set(rule["AllowedMethods"]) == set(code["AllowedMethods"])
    assert set(rule["AllowedHeaders"]) == set(code["AllowedHeaders"])
    assert rule["ExposedHeaders"] == code["ExposeHeaders"]
    assert rule["MaxAge"] == code["MaxAgeSeconds"]


def test_bucket_is_private_and_encrypted(resources: dict[str, Any]) -> None:
    bucket = resources["ImagesBucket"]

    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    (sse,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_function_is_the_lambda_image_in_apigateway_mode(resources: dict[str, Any]) -> None:
    function = resources["ImagesFunction"]

    assert function["PackageType"] == "Image"
    assert function["Environment"]["Variables"]["IMAGES_AUTH_MODE"] == "apigateway"
    assert function["Events"]["Sweep"]["Type"] == "Schedule"


def test_function_policy_touches_only_this_table_and_bucket(resources: dict[str, Any]) -> None:
    (policy,) = resources["ImagesFunction"]["Policies"]
    resources_named = [str(statement["Resource"]) for statement in policy["Statement"]]
    actions = {
        a
        for statement in policy["Statement"]
        for a in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }

    assert all("ImagesTable" in r or "ImagesBucket" in r for r in resources_named)
    assert not any(action.endswith("*") for action in actions)
    assert "dynamodb:Scan" not in actions


def test_queues_match_code(resources: dict[str, Any]) -> None:
    queue, dead = resources["UploadsQueue"], resources["UploadsDeadLetterQueue"]
    attributes = queue_attributes("arn:dead")

    assert str(queue["VisibilityTimeout"]) == attributes["VisibilityTimeout"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == MAX_RECEIVES
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "!GetAtt": "UploadsDeadLetterQueue.Arn"
    }
    assert dead["MessageRetentionPeriod"] == DEAD_LETTER_RETENTION_SECONDS


def test_bucket_notifies_the_queue_of_originals_only(resources: dict[str, Any]) -> None:
    (notification,) = resources["ImagesBucket"]["NotificationConfiguration"]["QueueConfigurations"]
    (code,) = bucket_notifications("arn")["QueueConfigurations"]

    assert [notification["Event"]] == code["Events"]
    assert notification["Queue"] == {"!GetAtt": "UploadsQueue.Arn"}
    assert notification["Filter"]["S3Key"]["Rules"] == code["Filter"]["Key"]["FilterRules"]


def test_worker_is_the_same_image_running_the_worker_handler(template: dict[str, Any]) -> None:
    api, worker = template["Resources"]["ImagesFunction"], template["Resources"]["WorkerFunction"]

    assert worker["Metadata"] == api["Metadata"]
    assert worker["Properties"]["ImageConfig"]["Command"] == ["app.worker.handler"]
    module, _, name = worker["Properties"]["ImageConfig"]["Command"][0].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def test_worker_reports_partial_batch_failures(resources: dict[str, Any]) -> None:
    uploads = resources["WorkerFunction"]["Events"]["Uploads"]

    assert uploads["Type"] == "SQS"
    assert uploads["Properties"]["Queue"] == {"!GetAtt": "UploadsQueue.Arn"}
    assert uploads["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def _statements(function: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (policy,) = function["Policies"]
    return {statement["Sid"]: statement for statement in policy["Statement"]}


def test_worker_reads_originals_writes_variants_and_updates_records_only(
    resources: dict[str, Any],
) -> None:
    statements = _statements(resources["WorkerFunction"])

    assert statements["Originals"]["Resource"] == {"!Sub": "${ImagesBucket.Arn}/images/*"}
    assert "s3:PutObject" not in statements["Originals"]["Action"]
    assert statements["Variants"]["Resource"] == {"!Sub": "${ImagesBucket.Arn}/variants/*"}
    assert set(statements["ImageRecords"]["Action"]) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}


def test_api_function_may_read_and_remove_variants(resources: dict[str, Any]) -> None:
    variants = _statements(resources["ImagesFunction"])["Variants"]

    assert set(variants["Action"]) == {"s3:GetObject", "s3:DeleteObject"}


def test_alarms_watch_dead_letters_and_the_oldest_upload(resources: dict[str, Any]) -> None:
    dead, backlog = resources["DeadLettersAlarm"], resources["UploadsBacklogAlarm"]

    assert (dead["MetricName"], dead["Threshold"]) == ("ApproximateNumberOfMessagesVisible", 1)
    assert dead["Dimensions"][0]["Value"] == {"!GetAtt": "UploadsDeadLetterQueue.QueueName"}
    assert backlog["MetricName"] == "ApproximateAgeOfOldestMessage"
