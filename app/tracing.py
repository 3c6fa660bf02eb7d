"""X-Ray: each AWS call a subsegment of the function's trace, when IMAGES_XRAY is set.

Off by default: importing the SDK and patching botocore adds 200-550 ms to a cold start
(docs/benchmarks.md). On Lambda the SDK takes the invocation's segment from the runtime;
elsewhere there is none, and it stays silent rather than failing a request.
"""


def enable_xray() -> None:
    from aws_xray_sdk.core import patch, xray_recorder  # noqa: PLC0415 - only when enabled

    xray_recorder.configure(service="image-service", context_missing="IGNORE_ERROR")
    patch(["botocore"])
