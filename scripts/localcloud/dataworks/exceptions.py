"""The errors the emulated DataWorks OpenAPI answers with: one class per real error code.

Every error body is `{"RequestId", "HostId", "Code", "Message", "Recommend"}` with the HTTP status
below. How the generic client sees it: 4xx -> ClientException, 5xx -> ServerException, and any
status with an `x-acs-retry-after` header -> ThrottlingException.

| Code                                        | HTTP | Source / note                                       |
|---------------------------------------------|------|-----------------------------------------------------|
| InvalidAction.NotFound                      | 404  | common POP code                                     |
| InvalidVersion                              | 400  | common POP code                                     |
| MissingParameter / InvalidParameter         | 400  | common POP codes; the message names the parameter   |
| InvalidTaskInstance.NotFound                | 404  | chosen here: no public doc gives the real one       |
| InvalidTaskInstanceLog.NotFound             | 404  | chosen here: a run whose log DataWorks no longer has|
| ResourceNotAuthorized.Api                   | 403  | DataWorks public error codes (the role may not call)|
| InvalidTask.NotFound                        | 404  | chosen here, likewise (GetTask)                     |
| Throttling.User                             | 429  | DataWorks error codes [1]: "too frequent"           |
| Throttling.Api                              | 429  | DataWorks error codes [1]: one API's limit          |
| Throttling.System                           | 429  | DataWorks error codes [1]: "system is busy"         |
| Throttling.Api.Risk                         | 429  | DataWorks error codes [1]: the daily call limit     |
| Throttling.Resource                         | 429  | DataWorks error codes [1]: the edition's quota      |
| ServiceUnavailable                          | 503  | common POP code                                     |
| InternalError                               | 500  | common POP code                                     |
| IncompleteSignature, InvalidSignatureMethod | 400  | from localcloud.acs3.SignatureError                 |
| SignatureDoesNotMatch                       | 400  | from localcloud.acs3.SignatureError                 |
| InvalidAccessKeyId.NotFound                 | 404  | from localcloud.acs3.SignatureError (KMS/POP table) |
| InvalidTimeStamp.Format / .Expired          | 400  | from localcloud.acs3.SignatureError                 |
| SignatureNonceUsed                          | 400  | from localcloud.acs3.SignatureError                 |
| MissingSecurityToken                        | 400  | from localcloud.acs3.SignatureError                 |
| InvalidSecurityToken.MismatchWithAccessKey  | 400  | from localcloud.acs3.SignatureError                 |
| InvalidSecurityToken.Expired                | 400  | from localcloud.acs3.SignatureError                 |

[1] DataWorks "Public error codes" (FACTS §2: the DataWorks OpenAPI error-code page),
https://www.alibabacloud.com/help/en/dataworks/developer-reference/api-dataworks-public-2020-05-18-errorcodes
-- every throttling code is HTTP 429, with the messages below. The page sits under the 2020-05-18
reference; that the 2024-05-18 gateway answers the same is inferred. `Throttling.Api.Risk` and
`Throttling.Resource` do not clear within minutes (FACTS §2). The daily limits per edition (Basic
100, Standard 1,000, Professional 10,000 calls a day, Enterprise none) are on DataWorks' "Usage
notes of DataWorks API operations" page.

Throttling answers carry no `x-acs-retry-after` header by default (no public source shows the
real gateway sending one), so the generic client raises ClientException with code Throttling.*;
the quota and the throttle fault can add the header (`retry_after=`) to exercise ThrottlingException.
"""

from __future__ import annotations


class DataWorksError(Exception):
    """An error answer: `status`, `code`, `message`, and extra response `headers`."""

    status = 400
    code = "InternalError"
    message = ""

    def __init__(self, message: str | None = None, headers: dict[str, str] | None = None):
        if message is not None:
            self.message = message
        self.headers = headers or {}
        super().__init__(f"{self.code}: {self.message}")


class InvalidActionNotFound(DataWorksError):
    status = 404
    code = "InvalidAction.NotFound"
    message = "Specified api is not found, please check your url and method."


class InvalidVersion(DataWorksError):
    code = "InvalidVersion"
    message = "Specified parameter Version is not valid."


class MissingParameter(DataWorksError):
    code = "MissingParameter"

    def __init__(self, name: str):
        super().__init__(f'The input parameter "{name}" that is mandatory for processing this request is not supplied.')


class InvalidParameter(DataWorksError):
    code = "InvalidParameter"

    def __init__(self, name: str, why: str):
        super().__init__(f'The specified parameter "{name}" is not valid: {why}')


class TaskInstanceNotFound(DataWorksError):
    status = 404
    code = "InvalidTaskInstance.NotFound"

    def __init__(self, instance_id: int):
        super().__init__(f"The instance does not exist: {instance_id}.")


class TaskInstanceLogNotFound(DataWorksError):
    """A run whose log is gone (or never was). The real answer is not documented: chosen here."""

    status = 404
    code = "InvalidTaskInstanceLog.NotFound"

    def __init__(self, instance_id: int, run_number: int):
        super().__init__(f"The log of run {run_number} of instance {instance_id} does not exist.")


class ResourceNotAuthorized(DataWorksError):
    """RAM refuses the call (DataWorks' public error codes: 403 ResourceNotAuthorized.Api)."""

    status = 403
    code = "ResourceNotAuthorized.Api"
    message = "You are not authorized to access the resources."


class TaskNotFound(DataWorksError):
    status = 404
    code = "InvalidTask.NotFound"

    def __init__(self, task_id: int, project_env: str):
        super().__init__(f"The task does not exist in {project_env}: {task_id}.")


class Throttling(DataWorksError):
    """A throttling answer: always HTTP 429, the code says which limit.

    Rate limits (they clear within a second or so): Throttling.User (the account's QPS),
    Throttling.Api (one API's limit), Throttling.System (DataWorks is busy). Quota limits (they do
    not clear within minutes): Throttling.Api.Risk (the daily call limit), Throttling.Resource
    (the edition's quota of calls).
    """

    status = 429
    MESSAGES = {
        "Throttling.User": "Your request is too frequent. Try again later.",
        "Throttling.Api": "The request for this resource has exceeded your available limit.",
        "Throttling.System": "The DataWorks system is busy. Try again later.",
        "Throttling.Api.Risk": "The request for this resource has exceeded your daily available limit.",
        "Throttling.Resource": (
            "the number of API calls that you can make has reached the upper limit. You can upgrade the "
            "edition of your DataWorks service to obtain a larger quota for the number of API calls."
        ),
    }
    RATE_CODES = ("Throttling.User", "Throttling.Api", "Throttling.System")
    DAILY_LIMIT = "Throttling.Api.Risk"
    EDITION_QUOTA = "Throttling.Resource"

    def __init__(self, code: str = "Throttling.User", retry_after: int | None = None):
        if code not in self.MESSAGES:
            raise ValueError(f"throttle code must be one of {sorted(self.MESSAGES)}, not {code!r}")
        self.code = code
        headers = {"x-acs-retry-after": str(retry_after)} if retry_after else None
        super().__init__(self.MESSAGES[code], headers)


class ServiceUnavailable(DataWorksError):
    status = 503
    code = "ServiceUnavailable"
    message = "The request has failed due to a temporary failure of the server."


class InternalError(DataWorksError):
    status = 500
    code = "InternalError"
    message = "The request processing has failed due to some unknown error, exception or failure."


SERVER_ERRORS = {cls.code: cls for cls in (ServiceUnavailable, InternalError)}
