"""Typed errors. search_api maps each to one HTTP status in one place."""

from __future__ import annotations

from typing import Any


class ClipsearchError(Exception):
    """Base of every error that the core raises on purpose."""

    code = "internal"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(ClipsearchError):
    """The caller sent something we cannot use (bad JSON, bad image, bad parameter)."""

    code = "invalid_input"


class NotFound(ClipsearchError):
    code = "not_found"


class Conflict(ClipsearchError):
    code = "conflict"


class ModelMismatch(Conflict):
    """This collection (class set, classifier) uses another model than the one it is used with: vectors
    of different models are never compared. One rule, raised by `require_model` below."""

    code = "model_mismatch"


def require_model(
    what: str, model_id: str, expected: str, *, by: str = "this service", hint: str = ""
) -> None:
    """One rule in one place: vectors of different models are never compared. Every path that would
    encode for, or compare against, a collection, class set or classifier calls this; it raises
    ModelMismatch (409) unless ``what`` (e.g. "collection 'trip'") uses ``expected``, the model of ``by``
    (this service, a classifier, a worker...), with the same details everywhere."""
    if model_id == expected:
        return
    message = (
        f"{what} uses model {model_id}; {by} runs {expected}"
        if by == "this service"
        else (f"{what} uses model {model_id}; {by} uses {expected}")
    )
    raise ModelMismatch(
        message + (f" ({hint})" if hint else ""), {"model_id": model_id, "expected_model": expected}
    )


class MissingOriginal(NotFound):
    """The stored original (or thumbnail) of an image is gone from the blob store: raised by
    `BlobStore.read_original` / `BlobStore.existing_path`, whatever the path that needs it."""

    code = "missing_original"


class PayloadTooLarge(ClipsearchError):
    code = "payload_too_large"


class UnsupportedMediaType(ClipsearchError):
    code = "unsupported_media_type"


class DecodeLimitExceeded(ClipsearchError):
    """Decoding these bytes ran past a hard limit of its decode process (DECODE_MAX_CPU_S,
    DECODE_MAX_MEMORY_MB) or crashed the decoder: one bounded failure of this image (422), never of the
    service. ``details["reason"]``: decode_cpu_limit, decode_memory_limit or decoder_crashed."""

    code = "decode_limit_exceeded"


class TooManyRequests(ClipsearchError):
    """A bound on what one deployment holds at once is reached (MAX_OPEN_JOBS open upload jobs): 429,
    ``details["reason"]`` says which, and ``retry_after_s`` when a slot can free at the earliest."""

    code = "too_many_requests"

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, *, retry_after_s: int = 1
    ) -> None:
        super().__init__(message, details)
        self.retry_after_s = retry_after_s


class Unauthorized(ClipsearchError):
    code = "unauthorized"


class Forbidden(ClipsearchError):
    code = "forbidden"


class CrossSiteRefused(Forbidden):
    """A state-changing request sent by a page of another origin (CSRF guard)."""

    code = "cross_site_refused"


class MisdirectedRequest(ClipsearchError):
    """The Host header names a host this service does not answer for (DNS-rebinding guard)."""

    code = "untrusted_host"


class ServiceUnavailable(ClipsearchError):
    """A backing service (Weaviate, Redis, workers, model) is not ready."""

    code = "service_unavailable"


class ModelUnavailable(ServiceUnavailable):
    """The model files are missing and cannot be fetched (offline, say)."""

    code = "model_unavailable"


class StartupError(ClipsearchError):
    """A managed server could not start; the message names the cause."""

    code = "startup_failed"


class DependencyUnavailable(ServiceUnavailable):
    """Redis, Weaviate, the queue or the object store did not answer: a transient outage, worth retrying
    later."""

    code = "dependency_unavailable"

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        dependency: str = "",
        retry_after_s: int = 5,
    ) -> None:
        super().__init__(message, {"dependency": dependency, **(details or {})} if dependency else details)
        self.dependency = dependency
        self.retry_after_s = retry_after_s


class QuorumUnavailable(DependencyUnavailable):
    """The vector store's cluster cannot reach enough replicas for the consistency level (a QUORUM write
    with 2 of 3 nodes down): nothing is wrong with the request, it works once the nodes are back. Jobs
    pause on it (their items are neither failed nor retried against a budget); requests get 503."""

    code = "no_quorum"


# What Weaviate says when a read or write cannot reach enough replicas, or the schema has no Raft leader.
_QUORUM_MARKS = (
    "cannot achieve consistency level",
    "cannot reach enough replicas",
    "not enough replicas",
    "leader not found",
)


def is_quorum_message(message: str) -> bool:
    """Whether a vector store's error message (a query's, a batch object's) means a lost quorum."""
    text = message.lower()
    return any(mark in text for mark in _QUORUM_MARKS)


def quorum_lost(detail: str, retry_after_s: int = 5) -> QuorumUnavailable:
    return QuorumUnavailable(
        f"vector store has no quorum: {detail[:300]}", dependency="weaviate", retry_after_s=retry_after_s
    )


_WEAVIATE_TRANSIENT_STATUS = {502, 503, 504}
# gRPC failures that mean the node or the connection went away, not a bad request: RST_STREAM is the
# HTTP/2 stream reset a node sends (or leaves) as it dies, seen in the cluster test when a node is killed.
_GRPC_TRANSIENT = (
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "connection refused",
    "failed to connect",
    "RST_STREAM",
    "Socket closed",
    # a call on the gRPC channel of a client that failover closed meanwhile (indexer.store.connection)
    "Channel closed",
    # a node that just restarted has its schema but not yet the class's index (shards load after ready)
    "tried to browse non-existing index",
)


def _object_store_unreachable(exc: BaseException) -> bool:
    """botocore's own retries are spent and the S3 endpoint still refuses or drops connections (the
    object store restarting); a refusal with an HTTP status (403, 404) is not an outage."""
    try:
        import botocore.exceptions as boto
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return False
    return isinstance(exc, boto.ConnectionError | boto.HTTPClientError)


def dependency_failure(exc: BaseException, retry_after_s: int = 5) -> DependencyUnavailable | None:
    """The DependencyUnavailable that a client library's exception means, or None when it is not an
    outage (a bad query, a bug). One place that knows the client exception types of Redis, the Celery
    broker (kombu), Weaviate (REST, gRPC) and the S3 object store (botocore)."""
    import kombu.exceptions
    import redis
    import weaviate.exceptions as wvx

    def down(dependency: str) -> DependencyUnavailable:
        return DependencyUnavailable(
            f"{dependency} is unavailable, retry later: {exc.__class__.__name__}",
            dependency=dependency,
            retry_after_s=retry_after_s,
        )

    if isinstance(exc, DependencyUnavailable):
        return exc
    if _object_store_unreachable(exc):
        return down("object store")
    if isinstance(exc, wvx.WeaviateBaseError) and is_quorum_message(str(exc)):
        return quorum_lost(str(exc), retry_after_s)
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):  # BusyLoadingError included
        return down("redis")
    if isinstance(exc, kombu.exceptions.OperationalError):
        return down("redis")
    if isinstance(
        exc,
        wvx.WeaviateConnectionError
        | wvx.WeaviateTimeoutError
        | wvx.WeaviateGRPCUnavailableError
        | wvx.WeaviateClosedClientError
        | wvx.WeaviateRetryError
        | wvx.WeaviateStartUpError,
    ):
        return down("weaviate")
    # grpc's own error for a call on a client that another thread just closed, failing over to another
    # node of a cluster (indexer.store.connection.FailoverClient): the next request uses the new one
    if isinstance(exc, ValueError) and "Cannot invoke RPC on closed channel" in str(exc):
        return down("weaviate")
    if isinstance(exc, wvx.UnexpectedStatusCodeError) and exc.status_code in _WEAVIATE_TRANSIENT_STATUS:
        return down("weaviate")
    if isinstance(exc, wvx.WeaviateQueryError) and any(mark in str(exc) for mark in _GRPC_TRANSIENT):
        return down("weaviate")
    # a batch write whose deadline passed or whose node went away (a cluster losing a node): re-run it
    if isinstance(exc, wvx.WeaviateBatchError) and any(
        mark.lower() in str(exc).lower() for mark in (*_GRPC_TRANSIENT, "deadline exceeded")
    ):
        return down("weaviate")
    try:
        import httpx
    except ImportError:  # pragma: no cover - weaviate-client depends on it
        return None
    # REST calls (the client's collection and schema calls): a connection refused, reset mid-answer
    # (ReadError: a cluster node killed while it answered) or dropped before any answer
    if isinstance(exc, httpx.NetworkError | httpx.TimeoutException | httpx.RemoteProtocolError):
        return down("weaviate")
    return None
