"""The simulated uploads queue, standing in for S3's notifications and SQS: every PUT
that S3 accepted becomes a message (S3's event notification, built as S3 writes it),
and the simulation decides when each is delivered, in which order, how often, whether
the delivery fails, when it goes to the dead-letter queue (after MAX_RECEIVES) and
when the dead-letter queue is redriven."""

import json
from dataclasses import dataclass, field
from urllib.parse import quote_plus

from app.storage.items import object_key
from app.storage.resources import MAX_RECEIVES

# Bodies that are not about an upload of ours: the worker must ignore them, never fail
# on them (issue 15, item 7).
POISON = {
    "not-json": "{not json",
    "records-string": json.dumps({"Records": "x"}),
    "record-string": json.dumps({"Records": ["x"]}),
    "s3-wrong-types": json.dumps(
        {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": 1, "object": []}}]}
    ),
    "key-not-string": json.dumps(
        {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": "images"}, "object": {"key": 5, "eTag": None}},
                }
            ]
        }
    ),
    "test-event": json.dumps({"Event": "s3:TestEvent", "Bucket": "images"}),
}


def s3_notification(bucket: str, image_id: str, etag: str, size: int) -> str:
    """The body S3 sends for an object created by a PUT (keys URL-encoded, the ETag
    without its quotes), as app.pipeline.notifications reads it."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": quote_plus(object_key(image_id), safe="/"),
                "size": size,
                "eTag": etag.strip('"'),
            },
        },
    }
    return json.dumps({"Records": [record]})


# Compared by identity: a duplicate has the same fields as its original, and the queue
# must settle the very delivery that ends, not the first equal one.
@dataclass(eq=False)
class Message:
    number: int  # in the order S3 sent them (a duplicate keeps its original's)
    body: str
    image_id: str | None  # None: a poison message
    etag: str | None
    receives: int = 0

    @property
    def id(self) -> str:
        return f"m{self.number}"


@dataclass
class SimQueue:
    pending: list[Message] = field(default_factory=list)
    dead: list[Message] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)  # every message ever sent
    in_flight: list[Message] = field(default_factory=list)

    def send(self, body: str, image_id: str | None, etag: str | None) -> Message:
        message = Message(len(self.sent), body, image_id, etag)
        self.sent.append(message)
        self.pending.append(message)
        return message

    def take(self, index: int) -> Message:
        """Receive one pending message (any of them: SQS standard queues do not keep
        order)."""
        message = self.pending.pop(index % len(self.pending))
        message.receives += 1
        self.in_flight.append(message)
        return message

    def settle(self, message: Message, handled: bool) -> str:
        """The delivery's end: handled and deleted, or back to the queue (visible again
        after its visibility timeout), or past MAX_RECEIVES to the dead-letter queue."""
        self.in_flight.remove(message)
        if handled:
            return "deleted"
        if message.receives >= MAX_RECEIVES:
            self.dead.append(message)
            return "dead-lettered"
        self.pending.append(message)
        return "back in the queue"

    def duplicate(self, index: int) -> Message:
        """S3 and SQS deliver at least once: any message sent may come (again), counted
        from the newest (0) back."""
        original = self.sent[-1 - index % len(self.sent)]
        copy = Message(original.number, original.body, original.image_id, original.etag)
        self.pending.append(copy)
        return copy

    def redrive(self) -> int:
        """`python -m app redrive`: the dead letters back to the uploads queue, new messages
        (their receive count starts again)."""
        moved = len(self.dead)
        for message in self.dead:
            message.receives = 0
            self.pending.append(message)
        self.dead = []
        return moved

    @property
    def drained(self) -> bool:
        return not self.pending and not self.dead and not self.in_flight


__all__ = ["POISON", "Message", "SimQueue", "s3_notification"]
