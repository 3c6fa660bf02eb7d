"""template.yaml (AWS SAM) declares the same table and bucket the code creates locally."""

import copy
import functools
import importlib
import json
import re
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from app.composition import OWN_CLAMD_START_SECONDS
from app.config import Settings
from app.domain.owners import new_image_id, owner_prefix
from app.domain.records import ImageRecord, Status
from app.domain.variants import DEFAULT_VARIANTS, OUTPUT_TYPES, VariantSpec
from app.http.app import create_app
from app.http.routes import IDEMPOTENCY_HEADER, REPLAYED
from app.pipeline.audit import INFECTED_METRIC, METRIC_NAMESPACE, audit_infected
from app.pipeline.notifications import GUARDDUTY_RESULT, GUARDDUTY_SOURCE, uploads_in
from app.storage.items import object_key, variant_key
from app.storage.resources import (
    DEAD_LETTER_RETENTION_SECONDS,
    MAX_RECEIVES,
    ORIGINAL_NAME,
    PENDING_TAG,
    USERS_PREFIX,
    VISIBILITY_TIMEOUT_SECONDS,
    WORKER_TIMEOUT_SECONDS,
    bucket_cors,
    bucket_lifecycle,
    bucket_notifications,
    dead_letter_queue,
    queue_attributes,
    table_definition,
)

# One worker: the SAM translator's outputs are cached per process (a few seconds each).
pytestmark = pytest.mark.xdist_group("template")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
# aws-sam-translator in a venv of its own (requirements/sam-translator.txt).
SAM_PYTHON = ROOT / ".sam-translator" / "bin" / "python"
XRAY = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess"}
# What a deployment with the CDN passes: the public key's PEM, the private key's SSM name.
PUBLIC_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
KEYED = {"CdnPublicKey": PUBLIC_KEY, "CdnPrivateKeyParameter": "/images/cdn-private-key"}
ALIAS = "ImagesFunctionAliaslive"


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


@functools.cache
def _transformed(parameters: str) -> dict[str, Any]:
    """The template through SAM's own transform, given these parameters (JSON)."""
    if not SAM_PYTHON.exists():
        pytest.skip("aws-sam-translator is not installed: `make test` installs .sam-translator/")
    transformed = subprocess.run(
        [
            str(SAM_PYTHON),
            "-I",
            str(ROOT / "tests" / "sam_transform.py"),
            str(TEMPLATE),
            parameters,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(transformed.stdout)
    return result


@pytest.fixture(scope="module")
def deployed() -> dict[str, Any]:
    """What `sam deploy` would create: the template through SAM's own transform."""
    resources: dict[str, Any] = _transformed("{}")["Resources"]
    return resources


def _values(template: dict[str, Any], parameters: dict[str, Any], region: str) -> dict[str, Any]:
    """Every parameter's value (its default unless given) and the pseudo parameters."""
    values = {name: spec.get("Default", "") for name, spec in template["Parameters"].items()}
    return values | parameters | _PSEUDO | {"AWS::Region": region}


# Ref of a Number parameter is a string: CloudFormation compares values as strings.
_DECISIONS = {
    "Fn::Equals": lambda arguments: str(arguments[0]) == str(arguments[1]),
    "Fn::Not": lambda arguments: not arguments[0],
    "Fn::And": all,
    "Fn::Or": any,
}


def _decide(expression: Any, values: dict[str, Any], conditions: dict[str, Any]) -> Any:
    """A condition or a rule's assertion, as CloudFormation decides it."""
    if not isinstance(expression, dict):
        return expression
    ((function, argument),) = expression.items()
    if function == "Ref":
        return values[argument]
    if function == "Condition":
        return _decide(conditions[argument], values, conditions)
    return _DECISIONS[function]([_decide(item, values, conditions) for item in argument])


_GONE = object()


def _apply(value: Any, holds: dict[str, bool], values: dict[str, Any]) -> Any:
    """A property as CloudFormation sees it: Fn::If decided, AWS::NoValue removed, a
    parameter's Ref replaced by its value (other Refs and Subs stay)."""
    if isinstance(value, list):
        return [item for item in (_apply(v, holds, values) for v in value) if item is not _GONE]
    if not isinstance(value, dict):
        return value
    if value == {"Ref": "AWS::NoValue"}:
        return _GONE
    if set(value) == {"Ref"} and value["Ref"] in values and "::" not in value["Ref"]:
        return values[value["Ref"]]
    if set(value) == {"Fn::If"}:
        condition, then, otherwise = value["Fn::If"]
        return _apply(then if holds[condition] else otherwise, holds, values)
    applied = {key: _apply(item, holds, values) for key, item in value.items()}
    return {key: item for key, item in applied.items() if item is not _GONE}


def _deploy(region: str = "eu-west-1", **parameters: Any) -> dict[str, Any]:
    """The resources a stack with these parameters would have: the template transformed
    with them, then its conditions decided as CloudFormation decides them."""
    template = _transformed(json.dumps(parameters, sort_keys=True))
    values = _values(template, parameters, region)
    conditions = template["Conditions"]
    holds = {name: _decide(c, values, conditions) for name, c in conditions.items()}
    return {
        name: _apply(resource, holds, values)
        for name, resource in template["Resources"].items()
        if holds.get(resource.get("Condition"), True)
    }


def _refused(**parameters: Any) -> list[str]:
    """The rules whose assertions these parameters break (CloudFormation refuses the
    stack before creating anything)."""
    template = _transformed("{}")
    values = _values(template, parameters, "eu-west-1")
    conditions = template["Conditions"]
    return [
        name
        for name, rule in template["Rules"].items()
        if _decide(rule.get("RuleCondition", True), values, conditions)
        and not all(_decide(a["Assert"], values, conditions) for a in rule["Assertions"])
    ]


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """A policy's statements; one under Fn::If as granted when its condition holds."""
    return [
        statement["Fn::If"][1] if "Fn::If" in statement else statement
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def _role_statements(deployed: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    (policy,) = deployed[role]["Properties"]["Policies"]
    return {statement["Sid"]: statement for statement in _statements(policy)}


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


# The few intrinsic functions the bucket's name and the queue policy use, evaluated as
# CloudFormation would in one stack.
_PSEUDO = {
    "AWS::StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/images/"
    "0d4a1c60-1d2e-11ef-9a3b-0a1b2c3d4e5f",
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
    "AWS::Region": "eu-west-1",
}


def _evaluate(value: Any, names: dict[str, Any] = _PSEUDO) -> Any:
    if not isinstance(value, dict):
        return value
    ((function, argument),) = value.items()
    if function == "Ref":
        return names[argument]
    if function == "Fn::Sub":
        return re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], argument)
    arguments = [_evaluate(item, names) for item in argument]
    if function == "Fn::Join":
        return arguments[0].join(_evaluate(item, names) for item in arguments[1])
    if function == "Fn::Split":
        return arguments[1].split(arguments[0])
    if function == "Fn::Select":
        return arguments[1][int(arguments[0])]
    raise AssertionError(f"not evaluated here: {function}")


def _cfn_json(value: Any) -> Any:
    """Short-form tags as parsed here ({"!Join": ...}) in CloudFormation's JSON form."""
    if isinstance(value, list):
        return [_cfn_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    ((name, argument),) = value.items()
    if name == "!Ref":
        return {"Ref": _cfn_json(argument)}
    return {f"Fn::{name.removeprefix('!')}": _cfn_json(argument)}


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
    """The rules every deployment has; archiving is the template's alone (local stores
    have no storage classes), and only when ArchiveAfterDays says so."""
    rules = _by_name(
        [r for r in resources["ImagesBucket"]["LifecycleConfiguration"]["Rules"] if "Id" in r],
        "Id",
    )
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


def test_function_policy_touches_only_this_stacks_resources_and_the_cdn_key(
    deployed: dict[str, Any],
) -> None:
    statements = _role_statements(deployed, "ImagesFunctionRole")
    named = [json.dumps(statement["Resource"]) for statement in statements.values()]
    actions = {action for statement in statements.values() for action in _actions(statement)}
    own = ("ImagesTable", "ImagesBucket", "ImagesFunctionLogs", "CdnPrivateKeyParameter")

    assert all(any(name in resource for name in own) for resource in named)
    assert not any(action.endswith("*") for action in actions)
    assert "dynamodb:Scan" not in actions


def test_roles_are_the_templates_own_and_grant_xray_only_while_tracing(
    deployed: dict[str, Any],
) -> None:
    """SAM's generated roles would grant X-Ray writes whatever Tracing says, and the SQS
    trigger's managed policy: each function has an explicit role instead."""
    roles = sorted(name for name, r in _deploy().items() if r["Type"] == "AWS::IAM::Role")

    assert roles == ["ImagesFunctionRole", "WorkerFunctionRole"]
    for function, role in (("ImagesFunction", roles[0]), ("WorkerFunction", roles[1])):
        assert deployed[function]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
        assert deployed[role]["Properties"]["ManagedPolicyArns"] == {
            "Fn::If": ["TracingOn", [XRAY], {"Ref": "AWS::NoValue"}]
        }


def test_worker_may_receive_delete_and_postpone_messages_of_its_own_queue_only(
    deployed: dict[str, Any],
) -> None:
    """ChangeMessageVisibility is the worker's backoff while a scanner is down
    (UploadQueue.postpone): without it every such message would wait out the whole
    visibility timeout."""
    statements = _role_statements(deployed, "WorkerFunctionRole").values()
    queue_access = [s for s in statements if any(a.startswith("sqs:") for a in _actions(s))]

    assert [statement["Resource"] for statement in queue_access] == [
        {"Fn::GetAtt": ["UploadsQueue", "Arn"]}
    ]
    assert set(_actions(queue_access[0])) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
    }


def test_worker_trigger_stops_at_the_workers_reserved_concurrency(
    deployed: dict[str, Any],
) -> None:
    (mapping,) = (r for r in deployed.values() if r["Type"] == "AWS::Lambda::EventSourceMapping")
    worker = deployed["WorkerFunction"]["Properties"]

    assert mapping["Properties"]["FunctionName"] == {"Ref": "WorkerFunction"}
    assert mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"] == {
        "Ref": "WorkerConcurrency"
    }
    assert worker["ReservedConcurrentExecutions"] == {"Ref": "WorkerConcurrency"}


def test_both_functions_check_uploads_against_the_same_limits(deployed: dict[str, Any]) -> None:
    api = deployed["ImagesFunction"]["Properties"]["Environment"]["Variables"]
    worker = deployed["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    shared = set(api) & set(worker)

    assert {"IMAGES_MAX_UPLOAD_BYTES", "IMAGES_MAX_PIXELS", "IMAGES_VARIANTS"} <= shared
    assert {name: api[name] for name in shared} == {name: worker[name] for name in shared}
    assert api["IMAGES_MAX_UPLOAD_BYTES"] == {"Ref": "MaxUploadBytes"}
    assert api["IMAGES_MAX_PIXELS"] == {"Ref": "MaxPixels"}
    assert api["IMAGES_VARIANTS"] == {"Ref": "Variants"}


def test_the_default_variant_set_is_the_codes(template: dict[str, Any]) -> None:
    default = json.loads(template["Parameters"]["Variants"]["Default"])

    assert {name: VariantSpec(**spec) for name, spec in default.items()} == DEFAULT_VARIANTS


def test_queue_takes_notifications_from_this_stacks_bucket_only(
    resources: dict[str, Any],
) -> None:
    statements = resources["UploadsQueuePolicy"]["PolicyDocument"]["Statement"]
    (statement,) = [s for s in statements if s.get("Sid") == "BucketNotifications"]
    bucket = _evaluate(_cfn_json(resources["ImagesBucket"]["BucketName"]))
    source = _evaluate(_cfn_json(statement["Condition"]["ArnEquals"]["aws:SourceArn"]))

    assert source == f"arn:aws:s3:::{bucket}"
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{2,62}", bucket)  # a valid, dot-free name


def test_dead_letter_queue_is_named_as_the_code_finds_it(resources: dict[str, Any]) -> None:
    queue = resources["UploadsQueue"]["QueueName"]["!Sub"]
    dead = resources["UploadsDeadLetterQueue"]["QueueName"]["!Sub"]

    assert dead == dead_letter_queue(Settings(queue=queue))


def test_queues_match_code(resources: dict[str, Any]) -> None:
    queue, dead = resources["UploadsQueue"], resources["UploadsDeadLetterQueue"]
    attributes = queue_attributes("arn:dead")
    visibility = _deploy()["UploadsQueue"]["Properties"]["VisibilityTimeout"]

    assert str(visibility) == attributes["VisibilityTimeout"]
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

    image = ("Dockerfile", "DockerContext", "DockerTag")
    assert [worker["Metadata"][key] for key in image] == [api["Metadata"][key] for key in image]
    assert worker["Properties"]["ImageConfig"]["Command"] == ["app.pipeline.lambda_handler.handler"]
    module, _, name = worker["Properties"]["ImageConfig"]["Command"][0].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))


def test_worker_reports_partial_batch_failures(resources: dict[str, Any]) -> None:
    uploads = resources["WorkerFunction"]["Events"]["Uploads"]

    assert uploads["Type"] == "SQS"
    assert uploads["Properties"]["Queue"] == {"!GetAtt": "UploadsQueue.Arn"}
    assert uploads["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_worker_reads_originals_writes_variants_and_updates_records_only(
    deployed: dict[str, Any],
) -> None:
    statements = _role_statements(deployed, "WorkerFunctionRole")

    assert statements["Originals"]["Resource"] == {
        "Fn::Sub": f"${{ImagesBucket.Arn}}/{USERS_PREFIX}*/{ORIGINAL_NAME}"
    }
    assert "s3:PutObject" not in statements["Originals"]["Action"]
    assert statements["Variants"]["Resource"] == [
        {"Fn::Sub": f"${{ImagesBucket.Arn}}/{USERS_PREFIX}*.{format_}"} for format_ in OUTPUT_TYPES
    ]
    assert set(statements["ImageRecords"]["Action"]) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}


def test_api_function_may_read_and_remove_variants(deployed: dict[str, Any]) -> None:
    variants = _role_statements(deployed, "ImagesFunctionRole")["Variants"]

    assert set(variants["Action"]) == {"s3:GetObject", "s3:DeleteObject"}


def test_alarms_watch_dead_letters_and_the_oldest_upload(resources: dict[str, Any]) -> None:
    dead, backlog = resources["DeadLettersAlarm"], resources["UploadsBacklogAlarm"]

    assert (dead["MetricName"], dead["Threshold"]) == ("ApproximateNumberOfMessagesVisible", 1)
    assert dead["Dimensions"][0]["Value"] == {"!GetAtt": "UploadsDeadLetterQueue.QueueName"}
    assert backlog["MetricName"] == "ApproximateAgeOfOldestMessage"


def _api_routes(resources: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(method, path, open) of every route the HTTP API sends to the function."""
    routes = []
    for event in resources["ImagesFunction"]["Events"].values():
        if event["Type"] == "HttpApi":
            properties = event["Properties"]
            is_open = properties.get("Auth", {}).get("Authorizer") == "NONE"
            routes.append((properties["Method"].upper(), properties["Path"], is_open))
    return routes


def _pattern(path: str) -> re.Pattern[str]:
    """API Gateway's path templates: {name} is one segment, {name+} one or more."""
    regex = re.sub(r"\\{[^}/]+?\\\+\\}", r"[^?]+", re.escape(path))
    regex = re.sub(r"\\{[^}/]+\\}", r"[^/]+", regex)
    return re.compile(f"^{regex}$")


def _route_for(
    routes: list[tuple[str, str, bool]], method: str, path: str
) -> tuple[str, str, bool]:
    """The route an HTTP API picks: a literal path before a parameter, a parameter before
    a greedy proxy (the longer literal prefix first), a method before ANY."""
    matching = [r for r in routes if r[0] in (method, "ANY") and _pattern(r[1]).match(path)]
    assert matching, f"no route for {method} {path}"

    def specificity(route: tuple[str, str, bool]) -> tuple[int, int, int, int]:
        _, template, _ = route
        literal = len(template.split("{", 1)[0])
        return ("+}" not in template, "{" not in template, literal, route[0] != "ANY")

    return max(matching, key=specificity)


def _concrete(path: str) -> str:
    return re.sub(r"\\{[^}]+\\}", "0123456789abcdef0123456789abcdef", path)


def test_every_open_path_of_the_app_is_reachable_without_a_token(
    resources: dict[str, Any],
) -> None:
    """The code is the source of truth: what the app serves without a bearer token (its
    pages, static files, docs and schema, and operations without a security
    requirement) must not be behind the JWT authorizer."""
    app = create_app(Settings(jwt_secret="x" * 32))
    schema = app.openapi()
    open_paths = [
        ("GET", path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if not operation.get("security") and method == "get"
    ]
    open_paths += [
        ("GET", "/"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/favicon.ico"),
    ]
    static = files("app").joinpath("static")
    open_paths += [("GET", f"/static/{name}") for name in ("gallery.js", "gallery.css")]
    open_paths += [
        ("GET", f"/static/vendor/swagger-ui/{f.name}")
        for f in static.joinpath("vendor", "swagger-ui").iterdir()
    ]
    routes = _api_routes(resources)

    closed = [(m, p) for m, p in open_paths if not _route_for(routes, m, p)[2]]

    assert closed == []


def test_every_protected_operation_is_behind_the_authorizer(resources: dict[str, Any]) -> None:
    schema = create_app(Settings(jwt_secret="x" * 32)).openapi()
    protected = [
        (method.upper(), _concrete(path))
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if operation.get("security")
    ]
    routes = _api_routes(resources)

    exposed = [(m, p) for m, p in protected if _route_for(routes, m, p)[2]]

    assert protected
    assert exposed == []


def test_cognito_pool_lets_nobody_sign_up_by_default(template: dict[str, Any]) -> None:
    pool = template["Resources"]["UserPool"]["Properties"]

    assert template["Parameters"]["AllowSelfSignUp"]["Default"] == "false"
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] == {
        "!If": ["SelfSignUp", False, True]
    }


def test_tracing_is_a_switch_off_by_default_that_both_functions_follow(
    template: dict[str, Any], deployed: dict[str, Any]
) -> None:
    assert template["Parameters"]["Tracing"]["Default"] == "PassThrough"
    for name in ("ImagesFunction", "WorkerFunction"):
        function = deployed[name]["Properties"]
        assert function["TracingConfig"] == {"Mode": {"Ref": "Tracing"}}
        assert function["Environment"]["Variables"]["IMAGES_XRAY"] == {
            "Fn::If": ["TracingOn", "true", "false"]
        }


def test_api_cors_lets_browsers_send_an_idempotency_key_and_read_the_replay(
    resources: dict[str, Any],
) -> None:
    cors = resources["HttpApi"]["CorsConfiguration"]

    assert IDEMPOTENCY_HEADER.lower() in cors["AllowHeaders"]
    assert REPLAYED.lower() in cors["ExposeHeaders"]


def test_alarms_watch_s3_errors_and_api_throttling(resources: dict[str, Any]) -> None:
    (metrics,) = resources["ImagesBucket"]["MetricsConfigurations"]
    throttled = resources["ThrottledRequestsMetric"]

    for name, metric in (
        ("BucketClientErrorsAlarm", "4xxErrors"),
        ("BucketServerErrorsAlarm", "5xxErrors"),
    ):
        alarm = resources[name]
        assert alarm["MetricName"] == metric
        assert {"Name": "FilterId", "Value": metrics["Id"]} in alarm["Dimensions"]
    assert throttled["FilterPattern"] == '{ $.status = "429" }'
    assert (
        resources["ApiThrottledAlarm"]["MetricName"]
        == (throttled["MetricTransformations"][0]["MetricName"])
    )


def test_dashboard_is_valid_json_over_this_stacks_resources(resources: dict[str, Any]) -> None:
    body = resources["Dashboard"]["DashboardBody"]["!Sub"]
    referenced = set(re.findall(r"\$\{([A-Za-z:.]+)\}", body))
    widgets = json.loads(re.sub(r"\$\{[A-Za-z:.]+\}", "x", body))["widgets"]

    assert {w["properties"]["title"] for w in widgets} >= {
        "API requests and errors",
        "Uploads waiting for the worker",
    }
    assert {ref.split(".")[0] for ref in referenced} - {"AWS::Region"} == {
        "HttpApi",
        "ImagesFunction",
        "WorkerFunction",
        "UploadsQueue",
        "UploadsDeadLetterQueue",
        "ImagesTable",
        "ImagesBucket",
    }


def test_every_checkov_skip_says_why(template: dict[str, Any]) -> None:
    skips = [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]

    assert skips
    assert [(name, s["id"]) for name, s in skips if len(s.get("comment", "")) < 40] == []


def test_worker_timeout_holds_a_whole_batch_of_renders_at_their_budget() -> None:
    """A batch never times out because of slow images (which would run every one of them
    again): each render stops at its budget, and the batch fits in the timeout."""
    deployed = _deploy()
    worker = deployed["WorkerFunction"]["Properties"]
    (mapping,) = (r for r in deployed.values() if r["Type"] == "AWS::Lambda::EventSourceMapping")
    render_wall = 3 * Settings().render_cpu_seconds
    room_per_image = 5  # reading 20 MiB, writing the variants and the record

    assert (
        mapping["Properties"]["BatchSize"] * (render_wall + room_per_image) <= (worker["Timeout"])
    )
    assert worker["Timeout"] == WORKER_TIMEOUT_SECONDS
    assert 6 * worker["Timeout"] <= VISIBILITY_TIMEOUT_SECONDS


def _distribution(resources: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = resources["Distribution"]["Properties"]["DistributionConfig"]
    return config


def _behaviours(resources: dict[str, Any]) -> list[dict[str, Any]]:
    config = _distribution(resources)
    return [config["DefaultCacheBehavior"], *config.get("CacheBehaviors", [])]


def _environment(resources: dict[str, Any], function: str) -> dict[str, Any]:
    variables: dict[str, Any] = resources[function]["Properties"]["Environment"]["Variables"]
    return variables


def test_distributions_only_origin_is_the_bucket_through_origin_access_control() -> None:
    resources = _deploy(**KEYED)
    (origin,) = _distribution(resources)["Origins"]
    access = resources["CdnOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]

    assert origin["DomainName"] == {"Fn::GetAtt": ["ImagesBucket", "RegionalDomainName"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["CdnOriginAccessControl", "Id"]}
    assert {b["TargetOriginId"] for b in _behaviours(resources)} == {origin["Id"]}
    assert (
        access["OriginAccessControlOriginType"],
        access["SigningProtocol"],
        access["SigningBehavior"],
    ) == ("s3", "sigv4", "always")


def test_every_cache_behaviour_requires_the_key_group_of_the_parameters_key() -> None:
    resources = _deploy(**KEYED)
    key_group = resources["CdnKeyGroup"]["Properties"]["KeyGroupConfig"]
    key = resources["CdnSigningKey"]["Properties"]["PublicKeyConfig"]

    assert all(b["TrustedKeyGroups"] == [{"Ref": "CdnKeyGroup"}] for b in _behaviours(resources))
    assert not any("TrustedSigners" in b for b in _behaviours(resources))
    assert key_group["Items"] == [{"Ref": "CdnSigningKey"}]
    assert key["EncodedKey"] == PUBLIC_KEY


def test_cache_key_holds_no_cookies_headers_or_signing_parameters() -> None:
    """One edge copy per object whatever signature fetched it: only the response-*
    overrides of an original's download URL change the response, so only they count."""
    resources = _deploy(**KEYED)
    policy = resources["CdnCachePolicy"]["Properties"]["CachePolicyConfig"]
    key = policy["ParametersInCacheKeyAndForwardedToOrigin"]

    assert all(b["CachePolicyId"] == {"Ref": "CdnCachePolicy"} for b in _behaviours(resources))
    assert not any(
        "ForwardedValues" in b or "OriginRequestPolicyId" in b for b in _behaviours(resources)
    )
    assert key["CookiesConfig"] == {"CookieBehavior": "none"}
    assert key["HeadersConfig"] == {"HeaderBehavior": "none"}
    assert key["QueryStringsConfig"]["QueryStringBehavior"] == "whitelist"
    assert sorted(key["QueryStringsConfig"]["QueryStrings"]) == [
        "response-content-disposition",
        "response-content-type",
    ]


def test_edge_caches_objects_for_a_day_whatever_they_say() -> None:
    """Keys are never rewritten, and objects are served as `private`: only a minimum TTL
    above zero lets CloudFront cache them at all."""
    policy = _deploy(**KEYED)["CdnCachePolicy"]["Properties"]["CachePolicyConfig"]

    assert policy["MinTTL"] >= 24 * 3600
    assert policy["MinTTL"] <= policy["DefaultTTL"] <= policy["MaxTTL"]


def test_viewers_reach_the_cdn_over_https_only_with_http2_and_http3() -> None:
    resources = _deploy(**KEYED)

    assert {b["ViewerProtocolPolicy"] for b in _behaviours(resources)} == {"https-only"}
    assert _distribution(resources)["HttpVersion"] == "http2and3"
    assert all(set(b["AllowedMethods"]) == {"GET", "HEAD"} for b in _behaviours(resources))


def test_custom_domain_serves_its_certificate_with_tls_1_2_at_least() -> None:
    config = _distribution(
        _deploy(
            **KEYED,
            CdnDomainName="img.example.com",
            CdnCertificateArn="arn:aws:acm:us-east-1:123456789012:certificate/abc",
        )
    )

    assert config["Aliases"] == ["img.example.com"]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
        "SslSupportMethod": "sni-only",
        "MinimumProtocolVersion": "TLSv1.2_2021",
    }
    assert "Aliases" not in _distribution(_deploy(**KEYED))


def test_cdn_responses_carry_nosniff_and_hsts() -> None:
    resources = _deploy(**KEYED)
    config = resources["CdnResponseHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]
    security = config["SecurityHeadersConfig"]

    assert all(
        b["ResponseHeadersPolicyId"] == {"Ref": "CdnResponseHeadersPolicy"}
        for b in _behaviours(resources)
    )
    assert security["ContentTypeOptions"] == {"Override": True}
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 365 * 24 * 3600
    assert security["StrictTransportSecurity"]["IncludeSubdomains"] is True
    assert security["StrictTransportSecurity"]["Override"] is True


def test_bucket_lets_only_this_distribution_get_images() -> None:
    policy = _deploy(**KEYED)["ImagesBucketPolicy"]["Properties"]
    allowed = [s for s in _statements(policy) if s["Effect"] == "Allow"]

    assert allowed == [
        {
            "Sid": "CloudFrontReadsImages",
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject",
            "Resource": {"Fn::Sub": f"${{ImagesBucket.Arn}}/{USERS_PREFIX}*"},
            "Condition": {
                "StringEquals": {
                    "AWS:SourceArn": {
                        "Fn::Sub": "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}"
                        ":distribution/${Distribution}"
                    }
                }
            },
        }
    ]


def test_alarms_watch_the_distributions_error_rates_from_us_east_1() -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:ops"
    resources = _deploy(region="us-east-1", AlarmTopicArn=topic, **KEYED)
    alarms = {
        r["Properties"]["MetricName"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"]["Namespace"] == "AWS/CloudFront"
    }

    assert sorted(alarms) == ["4xxErrorRate", "5xxErrorRate"]
    for alarm in alarms.values():
        assert alarm["Dimensions"] == [
            {"Name": "DistributionId", "Value": {"Ref": "Distribution"}},
            {"Name": "Region", "Value": "Global"},
        ]
        assert alarm["AlarmActions"] == [topic]


def test_cdn_alarms_exist_only_where_cloudfront_publishes_metrics() -> None:
    """CloudFront's metrics are in us-east-1 alone: elsewhere an alarm would never fire."""
    resources = _deploy(region="eu-west-1", **KEYED)

    assert "Distribution" in resources
    assert not [
        name
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"]["Namespace"] == "AWS/CloudFront"
    ]


@pytest.mark.parametrize("name", ["/images/cdn-private-key", "images/cdn-private-key"])
def test_api_role_may_read_exactly_the_named_key_parameter(name: str) -> None:
    """SSM's ARN holds the name without its leading slash, whichever way it is given."""
    statements = _role_statements(
        _deploy(**KEYED | {"CdnPrivateKeyParameter": name}), "ImagesFunctionRole"
    )
    (grant,) = (s for s in statements.values() if any(a.startswith("ssm:") for a in _actions(s)))
    names = _PSEUDO | {"CdnPrivateKeyParameter": name}

    assert _actions(grant) == ["ssm:GetParameter"]
    assert (
        _evaluate(grant["Resource"], names)
        == "arn:aws:ssm:eu-west-1:123456789012:parameter/images/cdn-private-key"
    )


def test_key_parameter_names_the_grant_cannot_misread_are_refused(
    template: dict[str, Any],
) -> None:
    pattern = re.compile(template["Parameters"]["CdnPrivateKeyParameter"]["AllowedPattern"])

    assert all(pattern.match(n) for n in ("", "/images/cdn-key", "cdn-key", "a.b_c-d/e"))
    assert not any(pattern.match(n) for n in ("/images//key", "/images/", "/", "key*", "a b"))


def test_worker_has_no_key_parameter_no_cdn_settings_and_no_cdn_access() -> None:
    resources = _deploy(**KEYED)
    actions = {
        action
        for statement in _role_statements(resources, "WorkerFunctionRole").values()
        for action in _actions(statement)
    }
    worker = json.dumps([resources["WorkerFunction"], resources["WorkerFunctionRole"]])

    assert not {a for a in actions if a.split(":")[0] in ("ssm", "kms", "cloudfront")}
    assert not [
        name
        for name in _environment(resources, "WorkerFunction")
        if name.startswith("IMAGES_CDN_") or name == "IMAGES_S3_ACCELERATE"
    ]
    assert not any(name in worker for name in ("Cdn", "Distribution", "ssm"))


def test_no_function_environment_holds_the_private_key(deployed: dict[str, Any]) -> None:
    """The API is told where the key is, never the key: no variable resolves an SSM
    parameter at deploy time, and the one naming it holds that name alone."""
    variables = {
        (function, name): json.dumps(value)
        for function in ("ImagesFunction", "WorkerFunction")
        for name, value in _environment(deployed, function).items()
    }
    naming = [key for key, value in variables.items() if "CdnPrivateKeyParameter" in value]
    told = _environment(_deploy(**KEYED), "ImagesFunction")

    assert not [key for key, value in variables.items() if "resolve:ssm" in value]
    assert not [key for key, value in variables.items() if "PRIVATE KEY" in value]
    assert naming == [("ImagesFunction", "IMAGES_CDN_PRIVATE_KEY_PARAMETER")]
    assert told["IMAGES_CDN_PRIVATE_KEY_PARAMETER"] == KEYED["CdnPrivateKeyParameter"]


def test_api_is_told_the_cdns_url_key_pair_and_cookie_domain() -> None:
    plain = _environment(_deploy(**KEYED), "ImagesFunction")
    domain = {
        "CdnDomainName": "img.example.com",
        "CdnCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc",
    }
    custom = _environment(
        _deploy(**KEYED, **domain, CdnCookieDomain=".example.com"), "ImagesFunction"
    )

    assert plain["IMAGES_CDN_URL"] == {"Fn::Sub": "https://${Distribution.DomainName}"}
    assert plain["IMAGES_CDN_KEY_PAIR_ID"] == {"Ref": "CdnSigningKey"}
    assert (plain["IMAGES_CDN_COOKIES"], plain["IMAGES_CDN_COOKIE_DOMAIN"]) == ("false", "")
    assert _evaluate(custom["IMAGES_CDN_URL"], domain) == "https://img.example.com"
    assert (custom["IMAGES_CDN_COOKIES"], custom["IMAGES_CDN_COOKIE_DOMAIN"]) == (
        "true",
        ".example.com",
    )


def test_owner_secret_is_generated_kept_forever_and_given_to_the_api(
    deployed: dict[str, Any],
) -> None:
    """It derives every user's key prefix: a new one would move new images elsewhere."""
    secret = deployed["OwnerSecret"]

    assert (secret["DeletionPolicy"], secret["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    assert _environment(deployed, "ImagesFunction")["IMAGES_OWNER_SECRET"] == {
        "Fn::Sub": "{{resolve:secretsmanager:${OwnerSecret}}}"
    }


def _lifecycle(resources: dict[str, Any]) -> list[dict[str, Any]]:
    lifecycle = resources["ImagesBucket"]["Properties"]["LifecycleConfiguration"]
    rules: list[dict[str, Any]] = lifecycle["Rules"]
    return rules


def test_archive_rule_moves_confirmed_originals_to_the_chosen_class() -> None:
    """Only confirmed originals carry state=ready (app/storage/objects.py, tag_ready):
    variants, small and read on every view, stay in Standard."""
    rules = _lifecycle(_deploy(ArchiveAfterDays=90, ArchiveStorageClass="GLACIER_IR"))
    (archive,) = (r for r in rules if "Transitions" in r)
    key, _ = PENDING_TAG

    assert archive["Status"] == "Enabled"
    assert archive["TagFilters"] == [{"Key": key, "Value": "ready"}]
    assert archive.get("Prefix", "") == ""
    assert archive["Transitions"] == [{"StorageClass": "GLACIER_IR", "TransitionInDays": 90}]


def test_archiving_defaults_to_intelligent_tiering_after_30_days() -> None:
    (archive,) = (r for r in _lifecycle(_deploy()) if "Transitions" in r)

    assert archive["Transitions"] == [
        {"StorageClass": "INTELLIGENT_TIERING", "TransitionInDays": 30}
    ]


def test_archive_rule_is_gone_with_archive_after_days_zero() -> None:
    rules = _lifecycle(_deploy(ArchiveAfterDays=0))

    assert [r for r in rules if "Transitions" in r] == []
    assert {r["Id"] for r in rules} == {"expire-unconfirmed-uploads", "abort-incomplete-multipart"}


def test_incomplete_multipart_uploads_are_aborted_everywhere() -> None:
    (abort,) = (r for r in _lifecycle(_deploy()) if "AbortIncompleteMultipartUpload" in r)

    assert abort["Status"] == "Enabled"
    assert abort["Prefix"] == ""
    assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


@pytest.mark.parametrize(("accelerate", "status"), [("true", "Enabled"), ("false", "Suspended")])
def test_bucket_and_upload_urls_follow_the_accelerate_switch(accelerate: str, status: str) -> None:
    resources = _deploy(Accelerate=accelerate)

    assert resources["ImagesBucket"]["Properties"]["AccelerateConfiguration"] == {
        "AccelerationStatus": status
    }
    assert _environment(resources, "ImagesFunction")["IMAGES_S3_ACCELERATE"] == accelerate


def test_api_gateway_and_the_schedule_invoke_the_live_alias(
    resources: dict[str, Any], deployed: dict[str, Any]
) -> None:
    alias = deployed[ALIAS]
    permissions = [r for r in deployed.values() if r["Type"] == "AWS::Lambda::Permission"]
    integrations = [
        operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        for operations in deployed["HttpApi"]["Properties"]["Body"]["paths"].values()
        for operation in operations.values()
        if "x-amazon-apigateway-integration" in operation
    ]
    (sweep,) = deployed["ImagesFunctionSweep"]["Properties"]["Targets"]

    assert (alias["Type"], alias["Properties"]["Name"]) == ("AWS::Lambda::Alias", "live")
    assert alias["Properties"]["FunctionName"] == {"Ref": "ImagesFunction"}
    assert len(integrations) == len(_api_routes(resources))
    assert all(f"/functions/${{{ALIAS}}}/invocations" in uri for uri in integrations)
    assert permissions
    assert all(p["Properties"]["FunctionName"] == {"Ref": ALIAS} for p in permissions)
    assert sweep["Arn"] == {"Ref": ALIAS}


def test_provisioned_concurrency_sits_on_the_alias() -> None:
    resources = _deploy(ProvisionedConcurrency=5)

    assert resources[ALIAS]["Properties"]["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": 5
    }
    assert "ProvisionedConcurrencyConfig" not in resources["ImagesFunction"]["Properties"]


def test_no_provisioned_concurrency_by_default() -> None:
    resources = _deploy()

    assert not [
        name
        for name, r in resources.items()
        if "ProvisionedConcurrencyConfig" in r.get("Properties", {})
    ]


def test_without_the_cdn_nothing_of_it_remains() -> None:
    resources = _deploy(Cdn="false")
    environment = _environment(resources, "ImagesFunction")
    policy = resources["ImagesBucketPolicy"]["Properties"]

    assert [n for n, r in resources.items() if r["Type"].startswith("AWS::CloudFront::")] == []
    assert environment["IMAGES_CDN_URL"] == ""
    assert (environment["IMAGES_CDN_KEY_PAIR_ID"], environment["IMAGES_CDN_COOKIES"]) == (
        "",
        "false",
    )
    assert [s for s in _statements(policy) if s["Effect"] == "Allow"] == []


def test_api_role_reads_no_parameter_without_the_cdn() -> None:
    statements = _role_statements(_deploy(Cdn="false"), "ImagesFunctionRole").values()

    assert not [s for s in statements if any(a.startswith("ssm:") for a in _actions(s))]


def test_rules_refuse_the_cdn_without_its_keys() -> None:
    assert _refused(**KEYED) == []
    assert _refused(**KEYED | {"CdnPublicKey": ""}) == ["CdnNeedsItsKeys"]
    assert _refused(**KEYED | {"CdnPrivateKeyParameter": ""}) == ["CdnNeedsItsKeys"]
    assert _refused(Cdn="false") == []


def test_rules_refuse_a_domain_without_its_certificate_and_cookies_without_a_domain() -> None:
    certificate = "arn:aws:acm:us-east-1:123456789012:certificate/abc"

    assert _refused(**KEYED, CdnDomainName="img.example.com") == ["CdnDomainNeedsCertificate"]
    assert _refused(**KEYED, CdnCertificateArn=certificate) == ["CdnCertificateNeedsDomain"]
    assert _refused(**KEYED, CdnCookieDomain=".example.com") == ["CdnCookiesNeedCdnDomain"]
    assert (
        _refused(
            **KEYED,
            CdnDomainName="img.example.com",
            CdnCertificateArn=certificate,
            CdnCookieDomain=".example.com",
        )
        == []
    )


def test_every_variable_the_functions_get_is_a_setting(deployed: dict[str, Any]) -> None:
    """A name the code does not read would be a switch that silently does nothing."""
    settings = {f"IMAGES_{name.upper()}" for name in Settings.model_fields}

    for function in ("ImagesFunction", "WorkerFunction"):
        assert set(_environment(deployed, function)) - settings == set()


# Malware scanning (Scan): the switch both functions follow, the worker's size for
# clamd, GuardDuty's plan and the way its verdicts reach the worker, the alarm.
SCANS = ["off", "clamav", "guardduty"]
GUARDDUTY_ONLY = ("MalwareProtectionPlan", "MalwareProtectionRole", "ScanResultsRule")
GUARDDUTY_PRINCIPAL = "malware-protection-plan.guardduty.amazonaws.com"
# GuardDuty's result event as its User Guide shows it (tests/events/README.md).
SCAN_RESULT = json.loads(
    (ROOT / "tests" / "events" / "guardduty-malware-scan-result.json").read_text()
)


def test_scan_is_a_switch_off_by_default_with_the_codes_values(template: dict[str, Any]) -> None:
    scan = template["Parameters"]["Scan"]

    assert scan["Default"] == "off"
    assert scan["AllowedValues"] == SCANS
    assert [Settings(scan=value).scan for value in scan["AllowedValues"]] == SCANS
    assert "IMAGES_SCAN" in scan["Description"]


@pytest.mark.parametrize("scan", SCANS)
def test_both_functions_are_told_the_scan_mode(scan: str) -> None:
    """The API marks confirmed images pending (or skipped), the worker scans: both must
    agree on whether scanning is on."""
    resources = _deploy(Scan=scan)

    assert _environment(resources, "ImagesFunction")["IMAGES_SCAN"] == scan
    assert _environment(resources, "WorkerFunction")["IMAGES_SCAN"] == scan


def _worker_sizing(resources: dict[str, Any]) -> tuple[int, int, int, int]:
    """The worker's memory and timeout, its trigger's batch size, the queue's visibility."""
    worker = resources["WorkerFunction"]["Properties"]
    (mapping,) = (r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping")
    visibility = resources["UploadsQueue"]["Properties"]["VisibilityTimeout"]
    return worker["MemorySize"], worker["Timeout"], mapping["Properties"]["BatchSize"], visibility


def test_clamav_worker_has_memory_for_clamd_and_time_to_load_it_and_scan_a_batch() -> None:
    """clamd holds ~1.2 GiB of definitions beside the renders; the first batch of an
    environment waits for it to load them (OWN_CLAMD_START_SECONDS), and every image of a
    batch may take its whole scan budget without timing out its neighbours."""
    memory, timeout, batch, visibility = _worker_sizing(_deploy(Scan="clamav"))
    scans = batch * Settings().scan_timeout_seconds

    assert memory == 3008
    assert timeout == WORKER_TIMEOUT_SECONDS + OWN_CLAMD_START_SECONDS + scans
    assert visibility == 6 * timeout


@pytest.mark.parametrize("scan", ["off", "guardduty"])
def test_worker_keeps_its_size_without_clamav(scan: str) -> None:
    memory, timeout, _, visibility = _worker_sizing(_deploy(Scan=scan))

    assert (memory, timeout, visibility) == (
        1024,
        WORKER_TIMEOUT_SECONDS,
        VISIBILITY_TIMEOUT_SECONDS,
    )


def test_guardduty_plan_protects_the_users_prefix_with_tagging_on() -> None:
    resources = _deploy(Scan="guardduty")
    plan = resources["MalwareProtectionPlan"]["Properties"]

    assert plan["ProtectedResource"] == {
        "S3Bucket": {"BucketName": {"Ref": "ImagesBucket"}, "ObjectPrefixes": [USERS_PREFIX]}
    }
    assert plan["Actions"] == {"Tagging": {"Status": "ENABLED"}}
    assert plan["Role"] == {"Fn::GetAtt": ["MalwareProtectionRole", "Arn"]}


def test_guardduty_role_is_assumable_by_malware_protection_alone() -> None:
    role = _deploy(Scan="guardduty")["MalwareProtectionRole"]["Properties"]

    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": GUARDDUTY_PRINCIPAL},
            "Action": "sts:AssumeRole",
        }
    ]
    assert "ManagedPolicyArns" not in role


def test_guardduty_role_holds_the_documented_permissions_on_this_bucket_only() -> None:
    """GuardDuty's User Guide, "Create or update IAM role policy": its managed rule, the
    bucket's EventBridge notifications, reading and tagging the objects it scans (here
    those under u/, the plan's prefix), and writing its validation object."""
    statements = _role_statements(_deploy(Scan="guardduty"), "MalwareProtectionRole")
    managed_rules = {
        "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}"
        ":rule/DO-NOT-DELETE-AmazonGuardDutyMalwareProtectionS3*"
    }
    objects = {"Fn::Sub": f"${{ImagesBucket.Arn}}/{USERS_PREFIX}*"}
    bucket = {"Fn::GetAtt": ["ImagesBucket", "Arn"]}
    granted = {
        sid: (set(_actions(s)), s["Resource"], s.get("Condition")) for sid, s in statements.items()
    }

    assert granted == {
        "AllowManagedRuleToSendS3EventsToGuardDuty": (
            {"events:PutRule", "events:DeleteRule", "events:PutTargets", "events:RemoveTargets"},
            managed_rules,
            {"StringLike": {"events:ManagedBy": GUARDDUTY_PRINCIPAL}},
        ),
        "AllowGuardDutyToMonitorEventBridgeManagedRule": (
            {"events:DescribeRule", "events:ListTargetsByRule"},
            managed_rules,
            None,
        ),
        "AllowPostScanTag": (
            {
                "s3:GetObjectTagging",
                "s3:PutObjectTagging",
                "s3:GetObjectVersionTagging",
                "s3:PutObjectVersionTagging",
            },
            objects,
            None,
        ),
        "AllowEnableS3EventBridgeEvents": (
            {"s3:PutBucketNotification", "s3:GetBucketNotification"},
            bucket,
            None,
        ),
        "AllowPutValidationObject": (
            {"s3:PutObject"},
            {"Fn::Sub": "${ImagesBucket.Arn}/malware-protection-resource-validation-object"},
            None,
        ),
        "AllowCheckBucketOwnership": ({"s3:ListBucket"}, bucket, None),
        "AllowMalwareScan": ({"s3:GetObject", "s3:GetObjectVersion"}, objects, None),
    }
    assert all(s["Effect"] == "Allow" for s in statements.values())


def test_bucket_keeps_the_eventbridge_notifications_guardduty_turns_on() -> None:
    """Left out, the next update of the bucket's notifications would turn them off, and
    GuardDuty would silently stop scanning."""
    for scan, expected in (("guardduty", {"EventBridgeEnabled": True}), ("off", None)):
        notifications = _deploy(Scan=scan)["ImagesBucket"]["Properties"][
            "NotificationConfiguration"
        ]
        assert notifications.get("EventBridgeConfiguration") == expected
        assert len(notifications["QueueConfigurations"]) == 1  # uploads still reach the worker


def _event_matches(pattern: dict[str, Any], event: Any) -> bool:
    """EventBridge's matching, for the parts of a pattern used here: each field one of
    the values listed (or a wildcard), nested objects field by field."""
    for field, expected in pattern.items():
        value = event.get(field) if isinstance(event, dict) else None
        if isinstance(expected, dict):
            if not _event_matches(expected, value):
                return False
        elif not any(_value_matches(option, value) for option in expected):
            return False
    return True


def _value_matches(option: Any, value: Any) -> bool:
    if isinstance(option, dict):
        ((kind, argument),) = option.items()
        assert kind == "wildcard", kind
        regex = ".*".join(re.escape(part) for part in argument.split("*"))
        return isinstance(value, str) and re.fullmatch(regex, value) is not None
    return bool(option == value)


def _scan_result(bucket: str, key: str, **changes: str) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(SCAN_RESULT) | changes
    event["detail"]["s3ObjectDetails"].update(bucketName=bucket, objectKey=key)
    return event


def test_scan_results_rule_takes_guarddutys_verdicts_on_this_buckets_originals_only() -> None:
    resources = _deploy(Scan="guardduty")
    rule = resources["ScanResultsRule"]["Properties"]
    bucket = _evaluate(resources["ImagesBucket"]["Properties"]["BucketName"])
    pattern = json.loads(json.dumps(rule["EventPattern"]))
    names = pattern["detail"]["s3ObjectDetails"]
    names["bucketName"] = [_evaluate(name) for name in names["bucketName"]]
    image_id = new_image_id(owner_prefix(b"owner-secret", "alice"))
    original = object_key(image_id)
    thumb = variant_key(image_id, "thumb", DEFAULT_VARIANTS["thumb"])
    verdict = _scan_result(bucket, original)

    assert (rule["State"], rule.get("EventBusName", "default")) == ("ENABLED", "default")
    assert rule["Targets"] == [
        {"Id": "uploads-queue", "Arn": {"Fn::GetAtt": ["UploadsQueue", "Arn"]}}
    ]
    assert (verdict["source"], verdict["detail-type"]) == (GUARDDUTY_SOURCE, GUARDDUTY_RESULT)
    assert _event_matches(pattern, verdict)
    assert [u.image_id for u in uploads_in(json.dumps(verdict), bucket)] == [image_id]
    assert not _event_matches(pattern, _scan_result("images-elsewhere", original))
    assert not _event_matches(pattern, _scan_result(bucket, thumb))
    assert not _event_matches(pattern, _scan_result(bucket, original, source="aws.s3"))
    assert not _event_matches(
        pattern, _scan_result(bucket, original, **{"detail-type": "GuardDuty Finding"})
    )


def test_queue_takes_guarddutys_verdicts_from_that_rule_only() -> None:
    def senders(scan: str) -> list[dict[str, Any]]:
        policy = _deploy(Scan=scan)["UploadsQueuePolicy"]["Properties"]["PolicyDocument"]
        return [s for s in policy["Statement"] if s["Principal"] != {"Service": "s3.amazonaws.com"}]

    assert senders("guardduty") == [
        {
            "Sid": "ScanResults",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["UploadsQueue", "Arn"]},
            "Condition": {
                "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ScanResultsRule", "Arn"]}}
            },
        }
    ]
    assert senders("off") == senders("clamav") == []


@pytest.mark.parametrize("scan", ["off", "clamav"])
def test_no_guardduty_resources_without_guardduty(scan: str) -> None:
    resources = _deploy(Scan=scan)

    assert [name for name in GUARDDUTY_ONLY if name in resources] == []
    assert [n for n, r in resources.items() if r["Type"].startswith("AWS::GuardDuty::")] == []
    assert not [name for name in GUARDDUTY_ONLY if name in json.dumps(resources)]  # no reference


def _infected_alarm(resources: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"]["MetricName"] == INFECTED_METRIC
    ]


@pytest.mark.parametrize("scan", ["clamav", "guardduty"])
def test_infected_uploads_alarm_watches_the_workers_metric_while_scanning(scan: str) -> None:
    topic = "arn:aws:sns:eu-west-1:123456789012:ops"

    (alarm,) = _infected_alarm(_deploy(Scan=scan, AlarmTopicArn=topic))

    assert (alarm["Namespace"], alarm["MetricName"]) == (METRIC_NAMESPACE, INFECTED_METRIC)
    assert "Dimensions" not in alarm  # the worker's metric has none (below)
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == [topic]


def test_no_infected_uploads_alarm_with_scanning_off() -> None:
    assert _infected_alarm(_deploy(Scan="off")) == []


def test_the_worker_writes_the_metric_the_alarm_watches(capsys: pytest.CaptureFixture[str]) -> None:
    """An alarm on a namespace, name or dimension set the worker does not write would
    never fire."""
    record = ImageRecord(
        id="0" * 8,
        user_id="alice",
        filename="a.jpeg",
        content_type="image/jpeg",
        size=1,
        status=Status.READY,
        created_at="2026-01-01T00:00:00Z",
    )
    audit_infected(record, "Eicar-Signature", "ClamAV", '"etag"')
    (line,) = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (directive,) = json.loads(line)["_aws"]["CloudWatchMetrics"]

    assert directive["Namespace"] == METRIC_NAMESPACE
    assert [m["Name"] for m in directive["Metrics"]] == [INFECTED_METRIC]
    assert directive["Dimensions"] == [[]]
