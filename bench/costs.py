"""A month of the service on AWS, priced with and without each switch: docs/costs.md.

    python -m bench.costs          # writes docs/costs.md
    python -m bench.costs --check  # exit 1 if docs/costs.md is not what this would write

Every assumption is a field of `Assumptions`, every price a row of `PRICES`; the rest is
arithmetic in plain functions, one per line item. The sentences of "Which switches pay"
are computed from the results, so they change when a price or an assumption does.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

DOC = Path(__file__).resolve().parent.parent / "docs" / "costs.md"

GB_PER_KB = 1 / (1024 * 1024)  # binary units, as AWS bills them
GB_PER_MB = 1 / 1024


# --- The month priced ------------------------------------------------------------------


@dataclass(frozen=True)
class Assumptions:
    """Everything the figures rest on besides prices; each field says what it means."""

    uploads_per_month: Annotated[int, "originals uploaded in the month"] = 100_000
    original_mb: Annotated[float, "average original, MB (all of them at least 128 KB)"] = 3.0
    library_months: Annotated[
        int,
        "months of uploads the bucket and table hold, uploaded evenly over time "
        "(storage is this many months of uploads)",
    ] = 12
    days_per_month: Annotated[int, "days in a month (storage and provisioned time)"] = 30
    api_calls_per_upload: Annotated[
        int, "API calls per upload: create and confirm (the gallery confirms)"
    ] = 2
    s3_writes_per_upload: Annotated[
        int,
        "S3 PUT-class requests per upload: the presigned PUT, confirm's tagging, "
        "two variants, the worker's tagging",
    ] = 5
    s3_reads_per_upload: Annotated[
        int, "S3 GETs per upload: confirm's ranged read and the worker's read"
    ] = 2
    db_writes_per_upload: Annotated[
        float,
        "DynamoDB write units per upload, an estimate from README's round trips: create "
        "and confirm each a transaction of the record and the usage item (2 units an "
        "item) plus the listing and sweep indexes' copies (1 each), 6 apiece; the "
        "worker's update and its two index copies, 3",
    ] = 15
    db_reads_per_upload: Annotated[
        float, "DynamoDB read units per upload: confirm's and the worker's consistent GetItem"
    ] = 2
    item_kb: Annotated[
        float, "a DynamoDB image record, KB (the listing index projects all of it)"
    ] = 1.0
    sqs_requests_per_upload: Annotated[
        int, "SQS requests per upload: S3's send, the event source's receive and delete"
    ] = 3
    sqs_idle_requests: Annotated[
        int,
        "SQS requests of the event source's long polls through the month, messages or "
        "not: 5 pollers, one 20 s poll each, 30 days",
    ] = 648_000
    worker_seconds: Annotated[
        float,
        "worker run time per image at 1,024 MB; an assumption: docs/benchmarks.md "
        "(section 6) measures 0.26 s (12 MP JPEG) to 1.5 s (12 MP HEIC) on one full "
        "core, and Lambda gives 1,024 MB about 0.58 of a vCPU (1,769 MB buy one)",
    ] = 1.0
    worker_memory_mb: Annotated[int, "worker function memory, MB (template.yaml)"] = 1024
    views_per_month: Annotated[
        float,
        "views of thumbs and previews; each is one fetch (browser caches not counted)",
    ] = 10_000_000
    thumb_share: Annotated[float, "share of views that are thumbs; the rest are previews"] = 0.8
    thumb_kb: Annotated[float, "thumb (WebP), KB"] = 20
    preview_kb: Annotated[float, "preview (WebP), KB"] = 250
    thumbs_per_list_call: Annotated[
        int, "thumbs per list call (a page); one get call per preview viewed"
    ] = 24
    list_response_kb: Annotated[float, "a list page's JSON, KB (docs/benchmarks.md, section 7)"] = (
        28
    )
    other_response_kb: Annotated[float, "a get, create or confirm response, KB"] = 2
    api_ms: Annotated[float, "API function time per request, ms (billed per ms)"] = 20
    api_memory_mb: Annotated[int, "API function memory, MB (template.yaml)"] = 512
    original_downloads_per_month: Annotated[
        float,
        "downloads of originals, spread evenly over the library's age (through the CDN "
        "when it is on, always a cache miss)",
    ] = 2_000
    cdn_hit_ratio: Annotated[
        float, "share of views CloudFront answers from its edge cache; each miss is one S3 GET"
    ] = 0.9
    archive_after_days: Annotated[
        int, "ArchiveAfterDays: confirmed originals change class after this many days"
    ] = 30
    archived_deletions_per_month: Annotated[
        float, "archived originals deleted in the month (storage is not reduced for them)"
    ] = 1_000
    days_archived_before_deletion: Annotated[
        float, "how long those had been in the archive class, days"
    ] = 45
    provisioned_share: Annotated[
        float,
        "share of API requests served by provisioned environments when there are any "
        "(traffic averages well under one request in flight)",
    ] = 1.0
    accelerated_share: Annotated[
        float,
        "share of uploads charged for acceleration (AWS does not charge one that was not "
        "faster; all are charged here)",
    ] = 1.0


ASSUMPTIONS = Assumptions()


def meanings() -> dict[str, str]:
    """Each assumption's name and what it means, in declaration order."""
    hints = get_type_hints(Assumptions, include_extras=True)
    return {f.name: str(hints[f.name].__metadata__[0]) for f in fields(Assumptions)}


# --- Prices ------------------------------------------------------------------------------

PRICES_AS_OF = "2025"
PRICES_NOTE = (
    "AWS list prices as published in 2025, us-east-1 (N. Virginia), x86 Lambda, "
    "pay-as-you-go; not re-checked online for this document"
)

PAGES = {
    "Amazon S3 pricing": "https://aws.amazon.com/s3/pricing/",
    "Amazon CloudFront pricing": "https://aws.amazon.com/cloudfront/pricing/",
    "AWS Lambda pricing": "https://aws.amazon.com/lambda/pricing/",
    "Amazon API Gateway pricing": "https://aws.amazon.com/api-gateway/pricing/",
    "Amazon DynamoDB pricing (on-demand)": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    "Amazon SQS pricing": "https://aws.amazon.com/sqs/pricing/",
}
S3, CLOUDFRONT, LAMBDA, API_GATEWAY, DYNAMODB, SQS = PAGES


@dataclass(frozen=True)
class Price:
    """`amount` dollars per `per` of `unit` (or, for a term, the amount in that unit)."""

    amount: float
    per: float
    unit: str
    page: str


def cost(price: Price, quantity: float) -> float:
    return quantity * price.amount / price.per


@dataclass(frozen=True)
class Prices:
    s3_standard: Price
    s3_writes: Price
    s3_reads: Price
    internet_out: Price
    internet_free_gb: Price
    it_frequent: Price
    it_infrequent: Price
    it_archive_instant: Price
    it_monitoring: Price
    it_transition: Price
    glacier_ir: Price
    glacier_ir_retrieval: Price
    glacier_ir_reads: Price
    glacier_ir_transition: Price
    glacier_ir_minimum_days: Price
    glacier_ir_minimum_kb: Price
    acceleration: Price
    cloudfront_out: Price
    cloudfront_requests: Price
    cloudfront_free_gb: Price
    cloudfront_free_requests: Price
    lambda_duration: Price
    lambda_requests: Price
    provisioned: Price
    provisioned_duration: Price
    http_api: Price
    dynamodb_writes: Price
    dynamodb_reads: Price
    dynamodb_storage: Price
    dynamodb_backups: Price
    sqs: Price


PRICES = Prices(
    s3_standard=Price(0.023, 1, "USD per GB-month, S3 Standard (first 50 TB)", S3),
    s3_writes=Price(0.005, 1000, "USD per 1,000 PUT, COPY, POST, LIST requests", S3),
    s3_reads=Price(0.0004, 1000, "USD per 1,000 GET requests", S3),
    internet_out=Price(0.09, 1, "USD per GB out to the internet (first 10 TB a month)", S3),
    internet_free_gb=Price(
        100, 1, "GB a month out to the internet free (all services but CloudFront)", S3
    ),
    it_frequent=Price(0.023, 1, "USD per GB-month, Intelligent-Tiering frequent access", S3),
    it_infrequent=Price(
        0.0125, 1, "USD per GB-month, Intelligent-Tiering infrequent (30 days unread)", S3
    ),
    it_archive_instant=Price(
        0.004, 1, "USD per GB-month, Intelligent-Tiering archive instant (90 days unread)", S3
    ),
    it_monitoring=Price(
        0.0025, 1000, "USD per 1,000 objects a month, monitoring (objects of 128 KB and up)", S3
    ),
    it_transition=Price(0.01, 1000, "USD per 1,000 lifecycle transitions to Int.-Tiering", S3),
    glacier_ir=Price(0.004, 1, "USD per GB-month, Glacier Instant Retrieval", S3),
    glacier_ir_retrieval=Price(0.03, 1, "USD per GB retrieved from Glacier IR", S3),
    glacier_ir_reads=Price(0.01, 1000, "USD per 1,000 GET requests on Glacier IR", S3),
    glacier_ir_transition=Price(
        0.02, 1000, "USD per 1,000 lifecycle transitions to Glacier IR", S3
    ),
    glacier_ir_minimum_days=Price(90, 1, "days, Glacier IR minimum storage duration", S3),
    glacier_ir_minimum_kb=Price(128, 1, "KB, Glacier IR minimum billable object size", S3),
    acceleration=Price(0.04, 1, "USD per GB accelerated (US, EU and Japan edges)", S3),
    cloudfront_out=Price(
        0.085, 1, "USD per GB out (first 10 TB a month, North America and Europe)", CLOUDFRONT
    ),
    cloudfront_requests=Price(0.01, 10_000, "USD per 10,000 HTTPS requests", CLOUDFRONT),
    cloudfront_free_gb=Price(1024, 1, "GB a month out free (always-free tier, 1 TB)", CLOUDFRONT),
    cloudfront_free_requests=Price(
        10_000_000, 1, "requests a month free (always-free tier)", CLOUDFRONT
    ),
    lambda_duration=Price(0.0000166667, 1, "USD per GB-second (x86)", LAMBDA),
    lambda_requests=Price(0.20, 1_000_000, "USD per million requests", LAMBDA),
    provisioned=Price(0.0000041667, 1, "USD per GB-second provisioned concurrency", LAMBDA),
    provisioned_duration=Price(
        0.0000097222, 1, "USD per GB-second run on provisioned concurrency", LAMBDA
    ),
    http_api=Price(1.00, 1_000_000, "USD per million HTTP API requests (first 300 M)", API_GATEWAY),
    dynamodb_writes=Price(0.625, 1_000_000, "USD per million write request units", DYNAMODB),
    dynamodb_reads=Price(0.125, 1_000_000, "USD per million read request units", DYNAMODB),
    dynamodb_storage=Price(0.25, 1, "USD per GB-month, table and indexes", DYNAMODB),
    dynamodb_backups=Price(0.20, 1, "USD per GB-month, point-in-time recovery", DYNAMODB),
    sqs=Price(0.40, 1_000_000, "USD per million requests (standard queue)", SQS),
)


# --- Scenarios ---------------------------------------------------------------------------

Archive = Literal["INTELLIGENT_TIERING", "GLACIER_IR"]


@dataclass(frozen=True)
class Scenario:
    """The template.yaml switches a deployment turns on."""

    key: str
    name: str
    cdn: bool = False
    archive: Archive | None = None
    accelerate: bool = False
    provisioned_concurrency: int = 0


BASELINE = Scenario("a", "baseline: presigned S3 GETs, no archiving, no acceleration")
CDN = Scenario("b", "Cdn", cdn=True)
CDN_IT = Scenario("c", "Cdn + archive to INTELLIGENT_TIERING", True, "INTELLIGENT_TIERING")
CDN_GIR = Scenario("d", "Cdn + archive to GLACIER_IR", True, "GLACIER_IR")
CDN_IT_ACCELERATE = Scenario("e", "(c) + Accelerate", True, "INTELLIGENT_TIERING", True)
CDN_IT_PROVISIONED = Scenario(
    "f", "(c) + ProvisionedConcurrency 2", True, "INTELLIGENT_TIERING", provisioned_concurrency=2
)
SCENARIOS = (BASELINE, CDN, CDN_IT, CDN_GIR, CDN_IT_ACCELERATE, CDN_IT_PROVISIONED)


# --- What the month makes ----------------------------------------------------------------


def list_calls(a: Assumptions) -> float:
    return a.views_per_month * a.thumb_share / a.thumbs_per_list_call


def get_calls(a: Assumptions) -> float:
    return a.views_per_month * (1 - a.thumb_share)


def api_calls(a: Assumptions) -> float:
    return a.uploads_per_month * a.api_calls_per_upload + list_calls(a) + get_calls(a)


def view_gb(a: Assumptions) -> float:
    """Bytes of thumbs and previews viewed."""
    thumbs = a.views_per_month * a.thumb_share * a.thumb_kb
    previews = a.views_per_month * (1 - a.thumb_share) * a.preview_kb
    return (thumbs + previews) * GB_PER_KB


def download_gb(a: Assumptions) -> float:
    return a.original_downloads_per_month * a.original_mb * GB_PER_MB


def api_response_gb(a: Assumptions) -> float:
    """The API's answers, out to the internet from API Gateway."""
    lists = list_calls(a) * a.list_response_kb
    others = (get_calls(a) + a.uploads_per_month * a.api_calls_per_upload) * a.other_response_kb
    return (lists + others) * GB_PER_KB


def upload_gb(a: Assumptions) -> float:
    return a.uploads_per_month * a.original_mb * GB_PER_MB


def library_days(a: Assumptions) -> float:
    return a.library_months * a.days_per_month


def originals_gb(a: Assumptions) -> float:
    return upload_gb(a) * a.library_months


def variants_gb(a: Assumptions) -> float:
    """Variants stay in S3 Standard whatever the archiving (small and hot)."""
    return a.uploads_per_month * a.library_months * (a.thumb_kb + a.preview_kb) * GB_PER_KB


def archived_days(a: Assumptions) -> float:
    """How far back the archived part of the library reaches, in days of uploads."""
    return max(0.0, library_days(a) - a.archive_after_days)


def archived_share(a: Assumptions) -> float:
    return archived_days(a) / library_days(a)


def list_read_units(a: Assumptions) -> float:
    """One eventually consistent Query of a page and one more item, half a unit a 4 KB."""
    return math.ceil((a.thumbs_per_list_call + 1) * a.item_kb / 4) / 2


def get_read_units(a: Assumptions) -> float:
    """One strongly consistent GetItem: one unit a 4 KB."""
    return float(math.ceil(a.item_kb / 4))


# --- Line items ----------------------------------------------------------------------------


def minimum_duration_charge(
    gb: float, days_stored: float, minimum_days: float, price_per_gb_month: float, month: float
) -> float:
    """What deleting `gb` after `days_stored` costs on top: the days short of the minimum."""
    return gb * price_per_gb_month * max(0.0, minimum_days - days_stored) / month


def billable_gb(objects: float, gb_each: float, minimum_kb: float) -> float:
    """Each object is charged at least the class's minimum size."""
    return objects * max(gb_each, minimum_kb * GB_PER_KB)


def overlap(start: float, end: float, lo: float, hi: float) -> float:
    return max(0.0, min(end, hi) - max(start, lo))


def intelligent_tiering_storage(a: Assumptions, p: Prices) -> float:
    """Originals enter the frequent tier at the transition; 30 days unread move them to
    infrequent, 90 to archive instant (downloads moving a few back are ignored)."""
    gb_per_day = upload_gb(a) / a.days_per_month
    span = archived_days(a)
    tiers = (
        (0.0, 30.0, p.it_frequent),
        (30.0, 90.0, p.it_infrequent),
        (90.0, math.inf, p.it_archive_instant),
    )
    stored = sum(cost(price, gb_per_day * overlap(0, span, lo, hi)) for lo, hi, price in tiers)
    objects = a.uploads_per_month / a.days_per_month * span
    return stored + cost(p.it_monitoring, objects)


def glacier_ir_storage(a: Assumptions, p: Prices) -> float:
    objects = a.uploads_per_month / a.days_per_month * archived_days(a)
    gb_each = a.original_mb * GB_PER_MB
    stored = cost(p.glacier_ir, billable_gb(objects, gb_each, p.glacier_ir_minimum_kb.amount))
    deleted = billable_gb(a.archived_deletions_per_month, gb_each, p.glacier_ir_minimum_kb.amount)
    early = minimum_duration_charge(
        deleted,
        a.days_archived_before_deletion,
        p.glacier_ir_minimum_days.amount,
        p.glacier_ir.amount,
        a.days_per_month,
    )
    retrieved = cost(p.glacier_ir_retrieval, download_gb(a) * archived_share(a))
    return stored + early + retrieved


def storage(s: Scenario, a: Assumptions, p: Prices) -> float:
    """S3 storage in every class, Intelligent-Tiering's monitoring, Glacier IR's
    minimum-duration and retrieval charges, and nothing of DynamoDB's (database)."""
    variants = cost(p.s3_standard, variants_gb(a))
    if s.archive is None:
        return variants + cost(p.s3_standard, originals_gb(a))
    recent = upload_gb(a) / a.days_per_month * min(library_days(a), a.archive_after_days)
    if s.archive == "INTELLIGENT_TIERING":
        archived = intelligent_tiering_storage(a, p)
    else:
        archived = glacier_ir_storage(a, p)
    return variants + cost(p.s3_standard, recent) + archived


def requests(s: Scenario, a: Assumptions, p: Prices) -> float:
    """S3 requests (lifecycle transitions included) and CloudFront's."""
    writes = cost(p.s3_writes, a.uploads_per_month * a.s3_writes_per_upload)
    reads = cost(p.s3_reads, a.uploads_per_month * a.s3_reads_per_upload)
    views_at_s3 = a.views_per_month * (1 - a.cdn_hit_ratio) if s.cdn else a.views_per_month
    views = cost(p.s3_reads, views_at_s3)
    archived_downloads = a.original_downloads_per_month * archived_share(a) if s.archive else 0.0
    download_price = p.glacier_ir_reads if s.archive == "GLACIER_IR" else p.s3_reads
    downloads = cost(p.s3_reads, a.original_downloads_per_month - archived_downloads) + cost(
        download_price, archived_downloads
    )
    transitions = 0.0
    if s.archive is not None and archived_days(a) > 0:
        price = p.it_transition if s.archive == "INTELLIGENT_TIERING" else p.glacier_ir_transition
        transitions = cost(price, a.uploads_per_month)
    edge = 0.0
    if s.cdn:
        fetches = a.views_per_month + a.original_downloads_per_month
        edge = cost(p.cloudfront_requests, max(0.0, fetches - p.cloudfront_free_requests.amount))
    return writes + reads + views + downloads + transitions + edge


def transfer(s: Scenario, a: Assumptions, p: Prices) -> float:
    """Bytes out to the internet (S3 and API Gateway, or CloudFront; S3 to CloudFront is
    free) and Transfer Acceleration on uploads. Uploads into AWS are free."""
    delivered = view_gb(a) + download_gb(a)
    internet = api_response_gb(a) + (0.0 if s.cdn else delivered)
    out = cost(p.internet_out, max(0.0, internet - p.internet_free_gb.amount))
    edge = 0.0
    if s.cdn:
        edge = cost(p.cloudfront_out, max(0.0, delivered - p.cloudfront_free_gb.amount))
    accelerated = 0.0
    if s.accelerate:
        accelerated = cost(p.acceleration, upload_gb(a) * a.accelerated_share)
    return out + edge + accelerated


def compute(s: Scenario, a: Assumptions, p: Prices) -> float:
    """Both Lambda functions: requests, duration, and provisioned concurrency's charge for
    the environments it keeps (its requests' duration is billed at its lower rate)."""
    api_gb_s = api_calls(a) * a.api_ms / 1000 * a.api_memory_mb / 1024
    worker_gb_s = a.uploads_per_month * a.worker_seconds * a.worker_memory_mb / 1024
    # At this rate (well under one upload a second) the worker's SQS batches are of one.
    invocations = api_calls(a) + a.uploads_per_month
    provisioned_gb_s = api_gb_s * a.provisioned_share if s.provisioned_concurrency else 0.0
    kept_gb_s = s.provisioned_concurrency * a.api_memory_mb / 1024 * a.days_per_month * 86_400
    return (
        cost(p.lambda_requests, invocations)
        + cost(p.lambda_duration, api_gb_s - provisioned_gb_s + worker_gb_s)
        + cost(p.provisioned_duration, provisioned_gb_s)
        + cost(p.provisioned, kept_gb_s)
    )


def api(s: Scenario, a: Assumptions, p: Prices) -> float:
    """API Gateway HTTP API requests (each under 512 KB, so one metered request each)."""
    return cost(p.http_api, api_calls(a))


def database(s: Scenario, a: Assumptions, p: Prices) -> float:
    """DynamoDB on demand: request units, table and listing index storage, PITR."""
    writes = a.uploads_per_month * a.db_writes_per_upload
    reads = (
        a.uploads_per_month * a.db_reads_per_upload
        + list_calls(a) * list_read_units(a)
        + (get_calls(a) + a.original_downloads_per_month) * get_read_units(a)
    )
    table_gb = a.uploads_per_month * a.library_months * a.item_kb * GB_PER_KB
    return (
        cost(p.dynamodb_writes, writes)
        + cost(p.dynamodb_reads, reads)
        + cost(p.dynamodb_storage, 2 * table_gb)  # the table and its listing index
        + cost(p.dynamodb_backups, table_gb)
    )


def queue(s: Scenario, a: Assumptions, p: Prices) -> float:
    """SQS: the uploads' messages (each under 64 KB) and the event source's polling."""
    return cost(p.sqs, a.uploads_per_month * a.sqs_requests_per_upload + a.sqs_idle_requests)


LINE_ITEMS: dict[str, Callable[[Scenario, Assumptions, Prices], float]] = {
    "storage": storage,
    "requests": requests,
    "transfer": transfer,
    "compute": compute,
    "API": api,
    "database": database,
    "queue": queue,
}


@dataclass(frozen=True)
class Month:
    scenario: Scenario
    items: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.items.values())


def monthly(s: Scenario, a: Assumptions = ASSUMPTIONS, p: Prices = PRICES) -> Month:
    return Month(s, {name: item(s, a, p) for name, item in LINE_ITEMS.items()})


def crossings(
    first: Scenario,
    second: Scenario,
    assumption: str,
    lo: float,
    hi: float,
    a: Assumptions = ASSUMPTIONS,
    p: Prices = PRICES,
) -> list[float]:
    """Values of one assumption between lo and hi where the two totals are equal (a log
    grid finds where their difference changes sign, bisection pins it)."""

    def gap(value: float) -> float:
        changes: dict[str, Any] = {assumption: value}
        changed = replace(a, **changes)
        return monthly(first, changed, p).total - monthly(second, changed, p).total

    steps = 32 * round(math.log10(hi / lo))
    grid = [lo * (hi / lo) ** (i / steps) for i in range(steps + 1)]
    found = []
    for start, end in itertools.pairwise(grid):
        if (gap(start) > 0) != (gap(end) > 0):
            left, right = start, end
            for _ in range(100):
                middle = (left + right) / 2
                if (gap(middle) > 0) == (gap(left) > 0):
                    left = middle
                else:
                    right = middle
            found.append((left + right) / 2)
    return found


def cheaper_below(
    first: Scenario,
    second: Scenario,
    assumption: str,
    value: float,
    a: Assumptions = ASSUMPTIONS,
    p: Prices = PRICES,
) -> Scenario:
    """Which of the two costs less just below `value` (1% less) of the assumption."""
    changes: dict[str, Any] = {assumption: value * 0.99}
    changed = replace(a, **changes)
    return min(first, second, key=lambda s: monthly(s, changed, p).total)


def cdn_break_even_views(a: Assumptions = ASSUMPTIONS, p: Prices = PRICES) -> list[float]:
    """Views a month where the baseline's and the CDN's totals cross."""
    return crossings(BASELINE, CDN, "views_per_month", 1e3, 1e11, a, p)


# --- docs/costs.md -----------------------------------------------------------------------


def usd(value: float) -> str:
    return f"${value:,.2f}"


def number(value: float) -> str:
    if float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def amount(value: float) -> str:
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.10f}".rstrip("0").rstrip(".")


def change(before: float, after: float) -> str:
    """ "saves $X/month (Y%)" or "adds ...", relative to `before`."""
    verb = "saves" if after < before else "adds"
    return f"{verb} {usd(abs(after - before))}/month ({abs(after - before) / before:.0%})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def cdn_sentences(a: Assumptions, p: Prices) -> list[str]:
    base, cdn = monthly(BASELINE, a, p), monthly(CDN, a, p)
    no_free_tier = replace(
        p,
        cloudfront_free_gb=replace(p.cloudfront_free_gb, amount=0),
        cloudfront_free_requests=replace(p.cloudfront_free_requests, amount=0),
    )
    without = monthly(CDN, a, no_free_tier)
    lines = [
        f"- **Cdn**, (b) against (a), {change(base.total, cdn.total)} at "
        f"{number(a.views_per_month)} views a month: transfer {usd(base.items['transfer'])} "
        f"-> {usd(cdn.items['transfer'])}, requests {usd(base.items['requests'])} -> "
        f"{usd(cdn.items['requests'])}. Without CloudFront's always-free tier (in an "
        f"account whose other distributions already use it up) the CDN "
        f"{change(base.total, without.total)}."
    ]
    few = replace(a, views_per_month=1_000)
    if monthly(CDN, few, p).total < monthly(BASELINE, few, p).total:
        opening = "It pays from the first views (it adds no monthly charge of its own here)."
    else:
        opening = "At 1,000 views a month it does not pay."
    found = []
    for views in cdn_break_even_views(a, p):
        below = cheaper_below(BASELINE, CDN, "views_per_month", views, a, p)
        cheaper, dearer = (
            ("the CDN", "presigned S3 GETs")
            if below == CDN
            else (
                "presigned S3 GETs",
                "the CDN",
            )
        )
        at = replace(a, views_per_month=views)
        egress_tb = (view_gb(at) + download_gb(at)) / 1024
        tier = (
            f" At that volume {egress_tb:,.1f} TB a month go out, past the first 10 TB "
            "price tier this model charges every byte at (later tiers are cheaper for both)."
            if egress_tb > 10
            else ""
        )
        found.append(
            f" Break-even: **{number(round(views, -3))} views a month**; below it {cheaper} "
            f"cost{'s' if cheaper == 'the CDN' else ''} less, above it {dearer} "
            f"do{'es' if dearer == 'the CDN' else ''}.{tier}"
        )
    if not found:
        found.append(" The two totals do not cross between 1,000 and 10^11 views a month.")
    lines.append(f"- {opening}{''.join(found)}")
    one = replace(a, views_per_month=1)
    per_million_s3 = 1e6 * (cost(p.s3_reads, 1) + cost(p.internet_out, view_gb(one)))
    per_million_cdn = 1e6 * (
        cost(p.cloudfront_requests, 1)
        + cost(p.s3_reads, 1 - a.cdn_hit_ratio)
        + cost(p.cloudfront_out, view_gb(one))
    )
    lines.append(
        f"- Past both free tiers, a million average views cost {usd(per_million_s3)} "
        f"through S3 and {usd(per_million_cdn)} through CloudFront (requests and bytes, "
        f"{a.cdn_hit_ratio:.0%} hits)"
        + (
            ": at these prices the CDN's saving is its free tier; beyond it, what the CDN "
            "buys is edge caching and latency."
            if per_million_cdn > per_million_s3
            else "."
        )
    )
    return lines


def archive_sentences(a: Assumptions, p: Prices) -> list[str]:
    cdn, it, gir = monthly(CDN, a, p), monthly(CDN_IT, a, p), monthly(CDN_GIR, a, p)
    lines = [
        f"- **ArchiveStorageClass=INTELLIGENT_TIERING**, (c) against (b), "
        f"{change(cdn.total, it.total)}: storage {usd(cdn.items['storage'])} -> "
        f"{usd(it.items['storage'])}.",
        f"- **GLACIER_IR** instead, (d) against (b), {change(cdn.total, gir.total)}, "
        f"{usd(abs(it.total - gir.total))}/month "
        f"{'less' if gir.total < it.total else 'more'} than Intelligent-Tiering.",
    ]
    deleted = billable_gb(
        a.archived_deletions_per_month, a.original_mb * GB_PER_MB, p.glacier_ir_minimum_kb.amount
    )
    early = minimum_duration_charge(
        deleted,
        a.days_archived_before_deletion,
        p.glacier_ir_minimum_days.amount,
        p.glacier_ir.amount,
        a.days_per_month,
    )
    detail = (
        f"Glacier IR's {number(p.glacier_ir_minimum_days.amount)}-day minimum charges "
        f"{usd(early)}/month for the {number(a.archived_deletions_per_month)} originals "
        f"deleted {number(a.days_archived_before_deletion)} days into the archive."
    )
    downloads = "original_downloads_per_month"
    for crossing in crossings(CDN_GIR, CDN_IT, downloads, 1, 1e9, a, p):
        below = cheaper_below(CDN_GIR, CDN_IT, downloads, crossing, a, p)
        cheaper, dearer = (
            ("Glacier IR", "Intelligent-Tiering")
            if below == CDN_GIR
            else (
                "Intelligent-Tiering",
                "Glacier IR",
            )
        )
        detail += (
            f" {cheaper} costs less than {dearer} up to **{number(round(crossing, -2))} "
            f"downloads of originals a month** (assumed: "
            f"{number(a.original_downloads_per_month)}), where Glacier IR's retrieval "
            f"({usd(p.glacier_ir_retrieval.amount)}/GB) and GET prices make the totals "
            "cross; a lower bound, as the model leaves downloaded originals in "
            "Intelligent-Tiering's cheaper tiers."
        )
    lines.append(f"- {detail}")
    return lines


def other_sentences(a: Assumptions, p: Prices) -> list[str]:
    it = monthly(CDN_IT, a, p)
    fast, warm = monthly(CDN_IT_ACCELERATE, a, p), monthly(CDN_IT_PROVISIONED, a, p)
    environments = CDN_IT_PROVISIONED.provisioned_concurrency
    kept_gb_s = environments * a.api_memory_mb / 1024 * a.days_per_month * 86_400
    served_gb_s = api_calls(a) * a.api_ms / 1000 * a.api_memory_mb / 1024 * a.provisioned_share
    cheaper_duration = cost(p.lambda_duration, served_gb_s) - cost(
        p.provisioned_duration, served_gb_s
    )
    return [
        f"- **Accelerate**, (e) against (c), {change(it.total, fast.total)}: "
        f"{number(upload_gb(a) * a.accelerated_share)} GB of uploads at "
        f"{usd(p.acceleration.amount)}/GB"
        + (
            ", paid for upload speed from far away, not returned in savings."
            if fast.total > it.total
            else "."
        ),
        f"- **ProvisionedConcurrency={environments}**, (f) against (c), "
        f"{change(it.total, warm.total)}: {usd(cost(p.provisioned, kept_gb_s))} for keeping "
        f"{environments} environments of {a.api_memory_mb} MB all month, less "
        f"{usd(cheaper_duration)} on the duration of the requests they serve"
        + (
            ", paid for fewer cold starts, not returned in savings."
            if warm.total > it.total
            else "."
        ),
    ]


def render(a: Assumptions = ASSUMPTIONS, p: Prices = PRICES) -> str:
    months = [monthly(s, a, p) for s in SCENARIOS]
    cheapest = min(months, key=lambda m: m.total)
    out = [
        "# What a month costs",
        "",
        "Generated by `python -m bench.costs` from `bench/costs.py`: change the script, "
        "not this file. `python -m bench.costs --check` exits 1 when this file is not what "
        "the script writes (`tests/test_costs.py` checks it).",
        "",
        f"Prices: {PRICES_NOTE}. An operator should re-check them on the linked pricing "
        "pages before relying on a figure; changing a row of `PRICES` and running the "
        "command again updates every table and sentence below.",
        "",
        "## The month priced",
        "",
        "Sizes are binary, as AWS bills them (1 GB = 1,024 MB = 1,048,576 KB).",
        "",
        *table(
            ["assumption", "value", "meaning"],
            [[f"`{k}`", number(getattr(a, k)), v] for k, v in meanings().items()],
        ),
        "",
        "What that makes:",
        "",
        *table(
            ["quantity", "a month"],
            [
                ["API calls (create and confirm, list, get)", number(api_calls(a))],
                ["list calls", number(list_calls(a))],
                ["thumbs and previews out, GB", f"{view_gb(a):,.1f}"],
                ["originals downloaded, GB", f"{download_gb(a):,.1f}"],
                ["API responses out, GB", f"{api_response_gb(a):,.1f}"],
                ["uploads in, GB", f"{upload_gb(a):,.1f}"],
                ["originals stored, GB", f"{originals_gb(a):,.1f}"],
                ["variants stored, GB", f"{variants_gb(a):,.1f}"],
                ["share of originals old enough to archive", f"{archived_share(a):.0%}"],
            ],
        ),
        "",
        "Left out, as equal in every scenario or outside the workload: free tiers other "
        "than the two on data out (Lambda's, SQS's and DynamoDB's are per account and "
        "shared with whatever else runs there), CloudWatch logs, metrics, alarms and the "
        "dashboard, Cognito, Secrets Manager and KMS, price tiers past the first, taxes, "
        "and savings plans or private pricing.",
        "",
        f"## Prices (as of {PRICES_AS_OF})",
        "",
        *table(
            ["price", "amount", "unit", "source"],
            [
                [
                    f"`{f.name}`",
                    amount(getattr(p, f.name).amount),
                    getattr(p, f.name).unit,
                    f"[{getattr(p, f.name).page}]({PAGES[getattr(p, f.name).page]})",
                ]
                for f in fields(Prices)
            ],
        ),
        "",
        "## Scenarios",
        "",
        "Dollars a month. *Storage*: S3 in every class, Intelligent-Tiering's monitoring, "
        "Glacier IR's retrieval and minimum-duration charges. *Requests*: S3's (lifecycle "
        "transitions included) and CloudFront's. *Transfer*: out to the internet from S3 "
        "and API Gateway, or from CloudFront, and Transfer Acceleration. *Compute*: both "
        "Lambda functions. *API*: API Gateway. *Database*: DynamoDB requests, storage and "
        "point-in-time recovery. *Queue*: SQS. Archived originals start in "
        "Intelligent-Tiering's frequent tier at the transition and move down after 30 and "
        "90 days unread (a download moving one back is ignored); every original is over "
        "128 KB, so each is transitioned and monitored.",
        "",
        *table(
            ["scenario", *LINE_ITEMS, "total"],
            [
                [
                    f"({m.scenario.key}) {m.scenario.name}",
                    *(usd(v) for v in m.items.values()),
                    f"**{usd(m.total)}**",
                ]
                for m in months
            ],
        ),
        "",
        "## Which switches pay",
        "",
        f"Computed from the table above. The cheapest of these is ({cheapest.scenario.key}) "
        f"at {usd(cheapest.total)}/month.",
        "",
        *cdn_sentences(a, p),
        *archive_sentences(a, p),
        *other_sentences(a, p),
        "",
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc is stale")
    parser.add_argument("--doc", type=Path, default=DOC, help="the file (docs/costs.md)")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.doc.exists() or args.doc.read_text() != text:
            print(f"{args.doc} is stale: run python -m bench.costs", file=sys.stderr)
            return 1
        return 0
    args.doc.write_text(text)
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
