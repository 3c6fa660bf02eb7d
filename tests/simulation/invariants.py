"""What the service promises, each as a named function whose docstring states the
promise. EVERY_STEP holds after every step of every history; QUIET_POINT once the
simulation has let everything settle (no operation paused, the queue and the
dead-letter queue drained, every deadline and grace period passed, DynamoDB's TTL
fired, the sweep run). The others judge an answer as it is given (what a client was
served, what the worker acknowledged, what the sweep and reconcile reported).

A broken promise raises Broken, naming the invariant and what broke it."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from app.domain.errors import Code, Conflict, InvalidImage, NotFound, ServiceError, Unavailable
from app.domain.records import SERVABLE_SCANS, ImageRecord, ScanStatus, Status, VariantStatus
from app.images.maintenance import Reconciliation, SweepReport
from app.images.models import Image
from app.storage.items import object_key, variant_keys
from tests.simulation.faults import Killed
from tests.simulation.queue import Message
from tests.simulation.world import CLEAN, PAYLOAD_BYTES, PAYLOAD_OF, USERS, VERIFIABLE, Snapshot

if TYPE_CHECKING:
    from tests.simulation.simulation import KeyedCreate, Simulation, Upload


class Broken(AssertionError):
    """An invariant did not hold."""


def fail(invariant: Callable[..., Any], detail: str) -> None:
    promise = (invariant.__doc__ or "").strip().splitlines()[0]
    raise Broken(f"{invariant.__name__}: {detail}\n    (the promise: {promise})")


def _label(sim: "Simulation", image_id: str) -> str:
    known = sim.by_id.get(image_id)
    return f"{known} ({image_id[:6]})" if known else f"unanswered image {image_id[:6]}"


def _made_keys(image_id: str, record: ImageRecord) -> set[str]:
    ready = {n: s for n, s in record.variants.items() if s.status == VariantStatus.READY}
    return set(variant_keys(image_id, ready, {}))


def _servable(record: ImageRecord | None) -> bool:
    return (
        record is not None
        and record.status == Status.READY
        and record.scan.status in SERVABLE_SCANS
    )


def _url_key(url: str, snapshot: Snapshot) -> str | None:
    """The object a URL reads, if it names one the bucket holds."""
    path = unquote(urlsplit(url).path)
    for key in snapshot.objects:
        if path.endswith("/" + key):
            return key
    return None


# --- After every step ----------------------------------------------------------------


def ready_original_holds_verified_bytes(sim: "Simulation", snapshot: Snapshot) -> None:
    """A ready image's original exists with exactly the bytes that were verified (bytes
    that pass confirm's checks), and they never change once it is ready."""
    for image_id, record in snapshot.records.items():
        if record.status != Status.READY:
            continue
        stored = snapshot.objects.get(object_key(image_id))
        if stored is None:
            fail(
                ready_original_holds_verified_bytes,
                f"{_label(sim, image_id)} is ready, its original is gone",
            )
            return
        payload = PAYLOAD_OF.get(stored.data)
        if payload not in VERIFIABLE:
            fail(
                ready_original_holds_verified_bytes,
                f"{_label(sim, image_id)} is ready with bytes that fail the checks ({payload})",
            )
        first = sim.ready_etags.setdefault(image_id, stored.etag)
        if first != stored.etag:
            fail(
                ready_original_holds_verified_bytes,
                f"{_label(sim, image_id)}'s bytes changed after it was ready",
            )


def ready_variants_exist(sim: "Simulation", snapshot: Snapshot) -> None:
    """A variant that says `ready` (on an image that is ready) exists in the bucket."""
    for image_id, record in snapshot.records.items():
        if record.status != Status.READY:
            continue
        for key in _made_keys(image_id, record):
            if key not in snapshot.objects:
                fail(ready_variants_exist, f"{_label(sim, image_id)}: {key} says ready, is gone")


def usage_matches_records(sim: "Simulation", snapshot: Snapshot) -> None:
    """Each user's quota usage equals what their records say: every image not found
    infected counts with its bytes, and those never confirmed count as pending too
    (every change moves record and usage in one transaction, so this holds between
    any two AWS calls, not only at quiet points)."""
    counted: dict[str, list[int]] = {user: [0, 0, 0, 0] for user in USERS}
    for record in snapshot.records.values():
        if record.scan.status == ScanStatus.INFECTED:
            continue
        counts = counted.setdefault(record.user_id, [0, 0, 0, 0])
        counts[0] += 1
        counts[1] += record.size
        if record.uploaded_at is None:
            counts[2] += 1
            counts[3] += record.size
    for user, counts in counted.items():
        item = snapshot.usage.get(user, {})
        usage = [
            int(item.get(name, {"N": "0"})["N"])
            for name in ("images", "bytes", "pending", "pending_bytes")
        ]
        if usage != counts:
            fail(
                usage_matches_records,
                f"{user}'s usage says (images, bytes, pending, pending bytes) = {usage}, "
                f"the records {counts}",
            )


def idempotency_key_makes_one_image(sim: "Simulation", snapshot: Snapshot) -> None:
    """An Idempotency-Key never makes two images (while it is remembered): every
    transaction that committed a claim of the key committed the same record."""
    first: dict[str, Any] = {}
    for claim in sim.injector.claims:
        earlier = first.setdefault(claim.claim, claim)
        if claim.record != earlier.record and claim.at < earlier.expires_at:
            fail(
                idempotency_key_makes_one_image,
                f"one key claimed for {_label(sim, earlier.record)} and "
                f"{_label(sim, claim.record)}",
            )


def deleted_image_never_returns(sim: "Simulation", snapshot: Snapshot) -> None:
    """A delete that answered 204 is never undone: the image's record is gone or being
    deleted (hidden everywhere), never pending, ready or rejected again."""
    for upload in sim.uploads:
        record = snapshot.records.get(upload.id)
        if upload.deleted and record is not None and record.status != Status.DELETING:
            fail(
                deleted_image_never_returns,
                f"{upload} was deleted (204), its record is {record.status} again",
            )


def bytes_put_in_time_are_kept(sim: "Simulation", snapshot: Snapshot) -> None:
    """Nothing PUT in time is discarded: valid, clean bytes that S3 accepted for an
    upload its owner did not delete stay in the bucket, and their image keeps its
    record (whether a worker's message came, failed, dead-lettered or came late)."""
    for upload in sim.uploads:
        if upload.delete_asked or not upload.puts or upload.puts[-1] not in CLEAN:
            continue
        record = snapshot.records.get(upload.id)
        if record is None:
            fail(
                bytes_put_in_time_are_kept,
                f"{upload}: valid bytes were PUT in time, its record is gone",
            )
            return
        if record.status == Status.INFECTED:
            continue  # closed: bytes PUT after malware was found are unwanted
        stored = snapshot.objects.get(object_key(upload.id))
        if stored is None or stored.data != PAYLOAD_BYTES[upload.size, upload.puts[-1]]:
            fail(
                bytes_put_in_time_are_kept,
                f"{upload} ({record.status}): the valid bytes PUT in time are gone",
            )


def rejected_image_says_why(sim: "Simulation", snapshot: Snapshot) -> None:
    """A refusal says why: a rejected (or infected) image's record keeps a reason."""
    for image_id, record in snapshot.records.items():
        if record.status in (Status.REJECTED, Status.INFECTED) and not record.reason:
            fail(rejected_image_says_why, f"{_label(sim, image_id)} is {record.status}, no reason")


def clean_verdict_only_on_clean_bytes(sim: "Simulation", snapshot: Snapshot) -> None:
    """Bytes the scanner flags are never recorded clean (nor served)."""
    for image_id, record in snapshot.records.items():
        if record.status == Status.DELETING:
            # Its bytes are gone, and a PUT racing the delete (the upload URL may still
            # live) lands under its key: those are nobody's, the worker removes them.
            continue
        stored = snapshot.objects.get(object_key(image_id))
        infected = stored is not None and PAYLOAD_OF.get(stored.data) == "infected"
        if record.scan.status == ScanStatus.CLEAN and infected:
            fail(
                clean_verdict_only_on_clean_bytes,
                f"{_label(sim, image_id)} is recorded clean over infected bytes",
            )


EVERY_STEP = [
    ready_original_holds_verified_bytes,
    ready_variants_exist,
    usage_matches_records,
    idempotency_key_makes_one_image,
    deleted_image_never_returns,
    bytes_put_in_time_are_kept,
    rejected_image_says_why,
    clean_verdict_only_on_clean_bytes,
]


# --- As answers are given ------------------------------------------------------------


def answers_are_never_internal_errors(action: str, error: BaseException | None) -> None:
    """Every answer is the service's own: a result or a ServiceError (4xx/503), never an
    unexpected exception (a 500)."""
    if error is not None and not isinstance(error, ServiceError | Killed):
        fail(answers_are_never_internal_errors, f"{action} raised {error!r}")


def idempotency_key_answers_one_image(sim: "Simulation", keyed: "KeyedCreate | None") -> None:
    """Every answer to a create with one Idempotency-Key names the same image, for as
    long as the key is remembered."""
    if keyed is None or len(set(keyed.answers)) < 2:
        return
    expiry = {claim.record: claim.expires_at for claim in sim.injector.claims}
    if sim.clock.timestamp() < expiry.get(keyed.answers[0], 0):
        fail(
            idempotency_key_answers_one_image,
            f"{keyed.key} answered {[_label(sim, a) for a in keyed.answers]}",
        )


def served_only_when_servable(
    sim: "Simulation", action: str, user: str, image: Image, snapshot: Snapshot
) -> None:
    """Nothing issues a URL for what is not ready and clean: an image's variant URLs
    come only with a ready image scanned clean, each naming an object that exists; and
    a user is only ever shown their own images."""
    record = snapshot.records.get(image.id)
    if record is None or record.user_id != user:
        fail(
            served_only_when_servable,
            f"{action} showed {user} {_label(sim, image.id)}, not theirs (or no record)",
        )
        return
    for name, variant in image.variants.items():
        if variant.url is None:
            continue
        if not _servable(record):
            fail(
                served_only_when_servable,
                f"{action} of {_label(sim, image.id)} ({record.status}, scan "
                f"{record.scan.status}) gave a {name} URL",
            )
        if _url_key(variant.url, snapshot) is None:
            fail(
                served_only_when_servable,
                f"{action} of {_label(sim, image.id)} gave a {name} URL to nothing",
            )


def download_only_when_servable(
    sim: "Simulation", upload: "Upload", variant: str, url: str, snapshot: Snapshot
) -> None:
    """A download URL is issued only for a ready image scanned clean, and names an
    object that exists (for the original: exactly the verified bytes)."""
    record = snapshot.records.get(upload.id)
    if not _servable(record):
        state = f"{record.status}, scan {record.scan.status}" if record else "no record"
        fail(download_only_when_servable, f"{upload}'s {variant} was served ({state})")
    key = _url_key(url, snapshot)
    if key is None:
        fail(download_only_when_servable, f"{upload}'s {variant} URL names nothing")
        return
    if variant == "original" and PAYLOAD_OF.get(snapshot.objects[key].data) not in CLEAN:
        fail(download_only_when_servable, f"{upload}'s original served bytes never verified")


def deleted_image_is_not_found(upload: "Upload", answer: Any, error: BaseException | None) -> None:
    """After a delete answered 204, the image is not found, wherever it is asked for (or
    the question fails, when AWS does)."""
    if answer is not None:
        fail(deleted_image_is_not_found, f"{upload} was deleted (204) and then shown")
    if not isinstance(error, NotFound | Unavailable | Killed):
        fail(deleted_image_is_not_found, f"{upload} was deleted (204); asked, {error!r}")


def deleted_image_leaves_no_bytes(upload: "Upload", snapshot: Snapshot) -> None:
    """A DELETE that answers 204 has removed the bytes the image had when its owner first
    asked (a first attempt that failed halfway is finished by the retry, never left
    with bytes and no record)."""
    assert upload.at_delete is not None
    etag, puts = upload.at_delete
    stored = snapshot.objects.get(object_key(upload.id))
    # Bytes PUT since (the upload URL may still live) are a new upload's, not these.
    if etag is not None and stored is not None and stored.etag == etag and len(upload.puts) == puts:
        fail(deleted_image_leaves_no_bytes, f"{upload} answered 204, its original is still there")


def confirm_refusal_says_why(
    sim: "Simulation", upload: "Upload", error: BaseException | None, snapshot: Snapshot
) -> None:
    """A refusal says why, whoever checked first: confirm of refused bytes answers 422
    with the reason, never "nothing uploaded" while the image stands rejected."""
    if isinstance(error, InvalidImage) and not error.detail:
        fail(confirm_refusal_says_why, f"confirm of {upload} refused with no reason")
    if isinstance(error, Conflict) and error.code == Code.NOT_UPLOADED:
        record = snapshot.records.get(upload.id)
        if record is not None and record.status == Status.REJECTED:
            fail(
                confirm_refusal_says_why,
                f"confirm of {upload} answered 'nothing uploaded'; it is rejected "
                f"({record.reason!r})",
            )


def acknowledged_infected_bytes_are_gone(message: Message, snapshot: Snapshot) -> None:
    """Infected bytes never outlive the worker's acknowledgement: once a message about
    bytes the scan found infected is handled, those bytes are gone."""
    if message.image_id is None:
        return
    record = snapshot.records.get(message.image_id)
    stored = snapshot.objects.get(object_key(message.image_id))
    if (
        record is not None
        and record.status == Status.INFECTED
        and stored is not None
        and stored.etag == message.etag
    ):
        fail(
            acknowledged_infected_bytes_are_gone,
            f"m{message.number} was acknowledged, its infected bytes are still stored",
        )


def poison_messages_are_ignored(message: Message, handled: bool, reason: object) -> None:
    """A message that is not about an upload of ours is ignored, never retried."""
    if message.image_id is None and not handled and reason is None:
        fail(poison_messages_are_ignored, f"poison m{message.number} failed: it will dead-letter")


def worker_fails_only_for_a_reason(message: Message, handled: bool, reason: object) -> None:
    """The worker fails a message only when something failed (an AWS call, the process,
    the scanner): with everything up, every message is handled the first time."""
    if not handled and reason is None:
        fail(
            worker_fails_only_for_a_reason,
            f"m{message.number} failed with no fault injected and the scanner up",
        )


def worker_never_raises(error: BaseException | None) -> None:
    """The worker reports failures message by message; its batch handler never raises."""
    if error is not None and not isinstance(error, Killed):
        fail(worker_never_raises, f"worker.handle raised {error!r}")


def sweep_finishes_without_faults(
    report: SweepReport | None, error: BaseException | None, fault: object
) -> None:
    """With no fault, the sweep finishes everything due and fails nothing; with one, it
    fails only as the service does (a ServiceError, or the process died)."""
    if error is not None and not isinstance(error, ServiceError | Killed):
        fail(sweep_finishes_without_faults, f"the sweep raised {error!r}")
    if isinstance(error, Killed):
        return  # its process died: the next sweep resumes
    if fault is None and (
        error is not None or report is None or report.failed or not report.complete
    ):
        fail(sweep_finishes_without_faults, f"with no fault the sweep ended {report or error!r}")


def reconcile_finds_no_drift(
    user: str, answer: Reconciliation | None, error: BaseException | None
) -> None:
    """Quota usage never drifts: reconcile recounts a user's records and finds their
    counters right."""
    if error is not None or answer is None:
        fail(reconcile_finds_no_drift, f"reconcile of {user} failed: {error!r}")
        return
    if answer.drift:
        fail(reconcile_finds_no_drift, f"{user}: usage {answer.before}, counted {answer.counted}")


def queue_drains(sim: "Simulation") -> None:
    """With everything up, the queue drains: no message keeps failing."""
    if not sim.queue.drained:
        fail(queue_drains, f"still queued: {[m.number for m in sim.queue.pending]}")


# --- At quiet points -----------------------------------------------------------------


def no_orphans_no_ghosts(sim: "Simulation", snapshot: Snapshot) -> None:
    """Once every deadline has passed and the queue is drained: every object has a
    record that is ready and names it, and every record left has its objects (no
    upload left pending or rejected, no delete left halfway)."""
    for key in snapshot.objects:
        _, _, image_id, name = key.split("/")
        record = snapshot.records.get(image_id)
        if record is None:
            fail(no_orphans_no_ghosts, f"orphan {name} of {_label(sim, image_id)} (no record)")
            return
        if record.status != Status.READY:
            fail(no_orphans_no_ghosts, f"{name} of {_label(sim, image_id)}, {record.status}")
        if name != "original" and key not in _made_keys(image_id, record):
            fail(no_orphans_no_ghosts, f"{name} of {_label(sim, image_id)} is in no record")
    for image_id, record in snapshot.records.items():
        if record.status in (Status.PENDING, Status.REJECTED, Status.DELETING):
            fail(
                no_orphans_no_ghosts,
                f"{_label(sim, image_id)} still {record.status} after every deadline",
            )


def variants_converge(sim: "Simulation", snapshot: Snapshot) -> None:
    """Variants not made are work still to do, never a final state: once the queue has
    drained (dead letters redriven), every servable image has each variant made (or
    failed, with the reason)."""
    for image_id, record in snapshot.records.items():
        if _servable(record) and record.to_make(sim.settings.variants):
            fail(
                variants_converge,
                f"{_label(sim, image_id)} never got {record.to_make(sim.settings.variants)}",
            )


def scans_converge(sim: "Simulation", snapshot: Snapshot) -> None:
    """A scanner that was down only delays a verdict: once it is up and the queue has
    drained, no ready image waits for its scan."""
    for image_id, record in snapshot.records.items():
        if record.status == Status.READY and record.scan.status == ScanStatus.PENDING:
            fail(scans_converge, f"{_label(sim, image_id)} still waits for its scan")


def sweep_index_empty(sim: "Simulation", snapshot: Snapshot) -> None:
    """Cleanup converges: once everything has passed and the sweep ran, nothing is left
    in the sweep's index."""
    for image_id, record in snapshot.records.items():
        if record.due_at is not None:
            fail(sweep_index_empty, f"{_label(sim, image_id)} ({record.status}) is still due")


def ready_originals_tagged_ready(sim: "Simulation", snapshot: Snapshot) -> None:
    """A ready image's original is tagged `state=ready` well before the lifecycle rule
    (which expires `state=pending` objects after two days) could reap it."""
    for image_id, record in snapshot.records.items():
        stored = snapshot.objects.get(object_key(image_id))
        if record.status == Status.READY and stored and stored.tags != {"state": "ready"}:
            fail(ready_originals_tagged_ready, f"{_label(sim, image_id)} is tagged {stored.tags}")


def infected_images_keep_nothing(sim: "Simulation", snapshot: Snapshot) -> None:
    """Nothing of an image found infected stays: its original and every variant go."""
    for image_id, record in snapshot.records.items():
        if record.status == Status.INFECTED and snapshot.objects_of(image_id):
            fail(
                infected_images_keep_nothing,
                f"{_label(sim, image_id)} is infected, still has "
                f"{sorted(k.rsplit('/', 1)[1] for k in snapshot.objects_of(image_id))}",
            )


def every_infection_is_audited(sim: "Simulation", snapshot: Snapshot) -> None:
    """The operator is told of every image found infected (the audit line and metric)."""
    told = {image_id for image_id, _, _ in sim.audit}
    for image_id, record in snapshot.records.items():
        if record.scan.status == ScanStatus.INFECTED and image_id not in told:
            fail(every_infection_is_audited, f"{_label(sim, image_id)} was never audited")


QUIET_POINT = [
    no_orphans_no_ghosts,
    variants_converge,
    scans_converge,
    sweep_index_empty,
    ready_originals_tagged_ready,
    infected_images_keep_nothing,
    every_infection_is_audited,
]
