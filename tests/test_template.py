"""template.yaml (AWS SAM) declares the same table and bucket the code creates locally."""

import importlib
import json
import re
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings
from app.domain.variants import DEFAULT_VARIANTS, OUTPUT_TYPES, VariantSpec
from app.http.app import create_app
from app.http.routes import IDEMPOTENCY_HEADER, REPLAYED
from app.storage.resources import (
    DEAD_LETTER_RETENTION_SECONDS,
    MAX_RECEIVES,
    ORIGINAL_NAME,
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

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
# aws-sam-translator in a venv of its own (requirements/sam-translator.txt).
SAM_PYTHON = ROOT / ".sam-translator" / "bin" / "python"
XRAY = {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXrayWriteOnlyAccess"}


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


@pytest.fixture(scope="module")
def deployed() -> dict[str, Any]:
    """What `sam deploy` would create: the template through SAM's own transform."""
    if not SAM_PYTHON.exists():
        pytest.skip("aws-sam-translator is not installed: `make test` installs .sam-translator/")
    transformed = subprocess.run(
        [str(SAM_PYTHON), "-I", str(ROOT / "tests" / "sam_transform.py"), str(TEMPLATE)],
        capture_output=True,
        text=True,
        check=True,
    )
    resources: dict[str, Any] = json.loads(transformed.stdout)["Resources"]
    return resources


def _role_statements(deployed: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    (policy,) = deployed[role]["Properties"]["Policies"]
    return {statement["Sid"]: statement for statement in policy["PolicyDocument"]["Statement"]}


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
}


def _evaluate(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    ((function, argument),) = value.items()
    if function == "Ref":
        return _PSEUDO[argument]
    if function == "Fn::Sub":
        return re.sub(r"\$\{([^}]+)\}", lambda m: _PSEUDO[m.group(1)], argument)
    arguments = [_evaluate(item) for item in argument]
    if function == "Fn::Join":
        return arguments[0].join(_evaluate(item) for item in arguments[1])
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


def test_function_policy_touches_only_this_table_and_bucket(deployed: dict[str, Any]) -> None:
    statements = _role_statements(deployed, "ImagesFunctionRole")
    named = [json.dumps(statement["Resource"]) for statement in statements.values()]
    actions = {action for statement in statements.values() for action in _actions(statement)}

    assert all(
        any(name in resource for name in ("ImagesTable", "ImagesBucket", "ImagesFunctionLogs"))
        for resource in named
    )
    assert not any(action.endswith("*") for action in actions)
    assert "dynamodb:Scan" not in actions


def test_roles_are_the_templates_own_and_grant_xray_only_while_tracing(
    deployed: dict[str, Any],
) -> None:
    """SAM's generated roles would grant X-Ray writes whatever Tracing says, and the SQS
    trigger's managed policy: each function has an explicit role instead."""
    roles = sorted(name for name, r in deployed.items() if r["Type"] == "AWS::IAM::Role")

    assert roles == ["ImagesFunctionRole", "WorkerFunctionRole"]
    for function, role in (("ImagesFunction", roles[0]), ("WorkerFunction", roles[1])):
        assert deployed[function]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
        assert deployed[role]["Properties"]["ManagedPolicyArns"] == {
            "Fn::If": ["TracingOn", [XRAY], {"Ref": "AWS::NoValue"}]
        }


def test_worker_may_receive_and_delete_messages_of_its_own_queue_only(
    deployed: dict[str, Any],
) -> None:
    statements = _role_statements(deployed, "WorkerFunctionRole").values()
    queue_access = [s for s in statements if any(a.startswith("sqs:") for a in _actions(s))]

    assert [statement["Resource"] for statement in queue_access] == [
        {"Fn::GetAtt": ["UploadsQueue", "Arn"]}
    ]
    assert set(_actions(queue_access[0])) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
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
    (statement,) = resources["UploadsQueuePolicy"]["PolicyDocument"]["Statement"]
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


def test_worker_timeout_holds_a_whole_batch_of_renders_at_their_budget(
    deployed: dict[str, Any],
) -> None:
    """A batch never times out because of slow images (which would run every one of them
    again): each render stops at its budget, and the batch fits in the timeout."""
    worker = deployed["WorkerFunction"]["Properties"]
    (mapping,) = (r for r in deployed.values() if r["Type"] == "AWS::Lambda::EventSourceMapping")
    render_wall = 3 * Settings().render_cpu_seconds
    room_per_image = 5  # reading 20 MiB, writing the variants and the record

    assert (
        mapping["Properties"]["BatchSize"] * (render_wall + room_per_image) <= (worker["Timeout"])
    )
    assert worker["Timeout"] == WORKER_TIMEOUT_SECONDS
    assert 6 * worker["Timeout"] <= VISIBILITY_TIMEOUT_SECONDS
