"""The embedded emulator behind `make run` applies each request atomically, as AWS does."""

import gc
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import httpx2 as httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from app.local.server import EmbeddedAws

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

THREADS, TRANSACTIONS = 8, 20


@pytest.fixture
def dynamodb() -> Iterator["DynamoDBClient"]:
    url = EmbeddedAws().start()
    httpx.post(f"{url}/moto-api/reset")  # moto's state is per process, not per server
    client = boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 0}, max_pool_connections=THREADS),
    )
    client.create_table(
        TableName="t",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
    )
    for start in range(0, 300, 25):  # a table big enough for a copy to take a while
        client.batch_write_item(
            RequestItems={
                "t": [
                    {"PutRequest": {"Item": {"k": {"S": f"seed{n}"}}}}
                    for n in range(start, start + 25)
                ]
            }
        )
    yield client
    client.close()


def test_concurrent_transactions_all_apply(dynamodb: "DynamoDBClient") -> None:
    """Plain moto answers 500 to some of these ("dictionary changed size during
    iteration": a transaction copies the table while another request writes it)."""
    errors: list[str] = []

    def create_like(thread: int) -> None:
        for n in range(TRANSACTIONS):
            try:
                dynamodb.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": "t",
                                "Item": {"k": {"S": f"{thread}-{n}"}},
                                "ConditionExpression": "attribute_not_exists(k)",
                            }
                        },
                        {
                            "Update": {
                                "TableName": "t",
                                "Key": {"k": {"S": f"usage{thread}"}},
                                "UpdateExpression": "ADD c :one",
                                "ExpressionAttributeValues": {":one": {"N": "1"}},
                            }
                        },
                    ]
                )
            except Exception as exc:  # every failure is the finding
                errors.append(str(exc)[:120])

    threads = [threading.Thread(target=create_like, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    counts = [
        dynamodb.get_item(TableName="t", Key={"k": {"S": f"usage{t}"}})["Item"]["c"]["N"]
        for t in range(THREADS)
    ]
    assert counts == [str(TRANSACTIONS)] * THREADS


def _transaction(dynamodb: "DynamoDBClient", new_key: str, usage_condition: str) -> None:
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "t", "Item": {"k": {"S": new_key}, "v": {"S": "new"}}}},
            {
                "Update": {
                    "TableName": "t",
                    "Key": {"k": {"S": "seed1"}},
                    "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {"S": "changed"}},
                }
            },
            {
                "ConditionCheck": {
                    "TableName": "t",
                    "Key": {"k": {"S": "seed2"}},
                    "ConditionExpression": usage_condition,
                }
            },
        ]
    )


def test_cancelled_transaction_changes_nothing(dynamodb: "DynamoDBClient") -> None:
    with pytest.raises(ClientError) as cancelled:
        _transaction(dynamodb, "brand-new", "attribute_not_exists(k)")  # seed2 exists

    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert "Item" not in dynamodb.get_item(TableName="t", Key={"k": {"S": "brand-new"}})
    assert dynamodb.get_item(TableName="t", Key={"k": {"S": "seed1"}})["Item"] == {
        "k": {"S": "seed1"}
    }


def test_transaction_cost_does_not_grow_with_the_table(dynamodb: "DynamoDBClient") -> None:
    def timed(n: int) -> float:
        """Best of three rounds, the collector paused: a long test run leaves a big heap."""
        rounds = []
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                started = time.perf_counter()
                for i in range(n):
                    key = f"t{time.perf_counter_ns()}-{i}"
                    _transaction(dynamodb, key, "attribute_exists(k)")
                rounds.append((time.perf_counter() - started) / n)
        finally:
            gc.enable()
        return min(rounds)

    small = timed(10)
    for start in range(0, 3000, 25):
        dynamodb.batch_write_item(
            RequestItems={
                "t": [
                    {"PutRequest": {"Item": {"k": {"S": f"more{n}"}}}}
                    for n in range(start, start + 25)
                ]
            }
        )
    large = timed(10)

    # Plain moto copies the whole table per transaction: ten times the items cost about
    # ten times as much. A ratio, measured in one run: machines here are noisy.
    assert large < small * 4, (small, large)
