"""FC 3.0's refusals, one small class per error code: what its OpenAPI answers, and why.

Each class carries the HTTP status and the error code FC's error-code page gives; the local
function model (`localcloud.fc.function`) raises the ones about an invocation, and the OpenAPI
(`localcloud.fc.server`) turns any of them into `{"Code", "Message", "RequestId"}` with the status.
Where the page is silent the choice is marked [inferred] (docs/inferred-facts.md).
"""

from __future__ import annotations


class FCError(Exception):
    """A refusal: `status` and `code` are what FC's API answers, the message says why."""

    status = 400
    code = "InvalidArgument"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidArgument(FCError):
    """400: a bad header, delay, task id or payload."""


class EntityTooLarge(FCError):
    """400: a payload above FC's limit (32 MB synchronous, 128 KB asynchronous)."""

    code = "EntityTooLarge"


class PathNotSupported(FCError):
    """400: a method or path the OpenAPI does not serve."""

    code = "PathNotSupported"


class AccessDenied(FCError):
    """403: the caller's RAM policy lacks fc:InvokeFunction on the function (a fault here)."""

    status = 403
    code = "AccessDenied"


class FunctionNotFound(FCError):
    """404: no function of that name."""

    status = 404
    code = "FunctionNotFound"


class AliasNotFound(FCError):
    """404: a qualifier other than LATEST (the only one that exists here)."""

    status = 404
    code = "AliasNotFound"


class AsyncTaskNotFound(FCError):
    """404: GetAsyncTask of a task id never used (the code's name is inferred)."""

    status = 404
    code = "AsyncTaskNotFound"


class ServiceUnavailable(FCError):
    """503: a fault: FC's async task service does not answer (the storm guard fails open)."""

    status = 503
    code = "ServiceUnavailable"


class TaskAlreadyExists(FCError):
    """409: async task mode is on and this task id was used before. The 409 is documented ("Task
    deduplication"); the error code's name is inferred."""

    status = 409
    code = "AsyncTaskAlreadyExists"


class ResourceExhausted(FCError):
    """429: too many requests (a throttling fault here)."""

    status = 429
    code = "ResourceExhausted"


class ConcurrencyExceeded(ResourceExhausted):
    """429: a synchronous invocation found every instance the reserved concurrency allows busy.
    FC's error-code list: ResourceExhausted, "concurrency over the limit" (an FC 2.0-era list;
    that FC 3.0 answers the same is inferred). 503 ResourceThrottled is "too many machines"."""


class InternalServerError(FCError):
    """500: the stand-in itself failed (its traceback goes to its own stderr, never to the caller)."""

    status = 500
    code = "InternalServerError"


# What FC's OpenAPI gateway answers for a refused ACS3 signature (localcloud.acs3's codes are
# DataWorks'), with its 403 [the codes: FC's error-code page].
SIGNATURE_CODES = {"SignatureDoesNotMatch": "SignatureNotMatch", "InvalidAccessKeyId.NotFound": "InvalidAccessKeyID"}
SIGNATURE_STATUS = 403
