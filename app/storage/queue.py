"""The uploads queue (S3's notifications for the worker) and its dead-letter queue."""

from dataclasses import dataclass

from app.config import Settings
from app.storage.clients import AwsClients, aws_call
from app.storage.resources import dead_letter_queue

# SQS's most per ReceiveMessage, SendMessageBatch and DeleteMessageBatch.
BATCH = 10


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    body: str
    receipt: str
    received: int = 1  # how many times SQS has handed it out


class UploadQueue:
    def __init__(self, clients: AwsClients, settings: Settings) -> None:
        self._clients = clients
        self._settings = settings
        self._urls: dict[str, str] = {}

    def _url(self, name: str) -> str:
        url = self._urls.get(name)
        if url is None:
            with aws_call():
                url = self._clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            self._urls[name] = url
        return url

    def _receive(self, name: str, wait_seconds: int, most: int = BATCH) -> list[Message]:
        with aws_call():
            received = self._clients.sqs.receive_message(
                QueueUrl=self._url(name),
                MaxNumberOfMessages=most,
                WaitTimeSeconds=wait_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        return [
            Message(
                m["MessageId"],
                m["Body"],
                m["ReceiptHandle"],
                int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
            )
            for m in received.get("Messages", [])
        ]

    def _delete(self, name: str, messages: list[Message]) -> None:
        if not messages:
            return
        with aws_call():
            self._clients.sqs.delete_message_batch(
                QueueUrl=self._url(name),
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m.receipt} for n, m in enumerate(messages)
                ],
            )

    def receive(self, wait_seconds: int) -> list[Message]:
        """Up to a batch of upload notifications, waiting up to `wait_seconds` for one.
        They come back after the visibility timeout unless deleted."""
        return self._receive(self._settings.queue, wait_seconds)

    def done(self, messages: list[Message]) -> None:
        """Delete handled messages (SQS would deliver them again otherwise)."""
        self._delete(self._settings.queue, messages)

    def postpone(self, receipt: str, seconds: int) -> None:
        """Have a received message come back in `seconds` (not its visibility timeout)."""
        with aws_call():
            self._clients.sqs.change_message_visibility(
                QueueUrl=self._url(self._settings.queue),
                ReceiptHandle=receipt,
                VisibilityTimeout=seconds,
            )

    def send(self, bodies: list[str]) -> int:
        """Put messages on the uploads queue, a batch per call; how many SQS took."""
        sent = 0
        for start in range(0, len(bodies), BATCH):
            batch = bodies[start : start + BATCH]
            with aws_call():
                answer = self._clients.sqs.send_message_batch(
                    QueueUrl=self._url(self._settings.queue),
                    Entries=[{"Id": str(n), "MessageBody": body} for n, body in enumerate(batch)],
                )
            sent += len(answer.get("Successful", []))
        return sent

    def redrive(self, most: int) -> int:
        """Move up to `most` messages from the dead-letter queue back to the uploads queue;
        how many moved. Sent before deleted: a crash in between leaves a message in both,
        and the worker handles a repeated one as it handles any redelivery."""
        dead = dead_letter_queue(self._settings)
        moved = 0
        while moved < most:
            # A long poll, however short: a short one samples only some of SQS's servers
            # and may answer empty while messages wait.
            messages = self._receive(dead, 1, min(BATCH, most - moved))
            if not messages:
                break
            with aws_call():
                sent = self._clients.sqs.send_message_batch(
                    QueueUrl=self._url(self._settings.queue),
                    Entries=[{"Id": str(n), "MessageBody": m.body} for n, m in enumerate(messages)],
                )
            delivered = {int(entry["Id"]) for entry in sent.get("Successful", [])}
            self._delete(dead, [m for n, m in enumerate(messages) if n in delivered])
            moved += len(delivered)
            if len(delivered) < len(messages):
                break  # SQS refused some: they stay dead-lettered, for the next run
        return moved
