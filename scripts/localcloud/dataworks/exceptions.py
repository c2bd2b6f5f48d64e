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
| InvalidTask.NotFound                        | 404  | chosen here, likewise (GetTask)                     |
| Throttling.User / Throttling.Api            | 400  | common POP codes (DataWorks rate-limit doc)         |
| Throttling.System                           | 503  | chosen here (system-side overload)                  |
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


class TaskNotFound(DataWorksError):
    status = 404
    code = "InvalidTask.NotFound"

    def __init__(self, task_id: int, project_env: str):
        super().__init__(f"The task does not exist in {project_env}: {task_id}.")


class Throttling(DataWorksError):
    """Throttling.User (the account's quota), Throttling.Api (one API's quota) or Throttling.System."""

    MESSAGES = {
        "Throttling.User": (400, "Request was denied due to user flow control."),
        "Throttling.Api": (400, "Request was denied due to api flow control."),
        "Throttling.System": (503, "Request was denied due to system flow control."),
    }

    def __init__(self, code: str = "Throttling.User", retry_after: int | None = None):
        if code not in self.MESSAGES:
            raise ValueError(f"throttle code must be one of {sorted(self.MESSAGES)}, not {code!r}")
        self.code = code
        self.status, message = self.MESSAGES[code]
        headers = {"x-acs-retry-after": str(retry_after)} if retry_after else None
        super().__init__(message, headers)


class ServiceUnavailable(DataWorksError):
    status = 503
    code = "ServiceUnavailable"
    message = "The request has failed due to a temporary failure of the server."


class InternalError(DataWorksError):
    status = 500
    code = "InternalError"
    message = "The request processing has failed due to some unknown error, exception or failure."


SERVER_ERRORS = {cls.code: cls for cls in (ServiceUnavailable, InternalError)}
