"""What the operator is told of malware: an audit log line naming user, image and
signature, and a metric that feeds an alarm (template.yaml `InfectedUploadsAlarm`).

The metric is written in CloudWatch's Embedded Metric Format: a JSON line on stdout,
which Lambda's log pipeline turns into a metric with no API call (and no permission)
from the worker; elsewhere it is one more log line."""

import json
import logging
import sys
import time

from app.domain.records import ImageRecord

log = logging.getLogger("app.audit")

METRIC_NAMESPACE = "ImageService"
INFECTED_METRIC = "InfectedUploads"


def audit_infected(record: ImageRecord, signature: str, engine: str, etag: str) -> None:
    log.warning(
        "malware found",
        extra={
            "audit": "infected",
            "user_id": record.user_id,
            "image_id": record.id,
            "signature": signature,
            "engine": engine,
            "size": record.size,
            "etag": etag.strip('"'),
        },
    )
    metric = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": METRIC_NAMESPACE,
                    "Dimensions": [[]],
                    "Metrics": [{"Name": INFECTED_METRIC, "Unit": "Count"}],
                }
            ],
        },
        INFECTED_METRIC: 1,
    }
    print(json.dumps(metric), file=sys.stdout, flush=True)
