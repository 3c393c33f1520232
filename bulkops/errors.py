"""Every error bulkops raises, in one tree.

    BulkopsError                      base; ``exit_code`` says how the CLI ends
    ├── InputError                    bad input, nothing was sent (exit 2)
    │   ├── JobFileError              a job file is malformed: names the file, the key, what is accepted
    │   ├── FilterSyntaxError         an OData $filter does not parse: names the position
    │   ├── UnknownFieldError         a resource, field or navigation is not in the v7 model
    │   └── PlanFileError             a plan file is unreadable or of another format version
    ├── GuardError                    a safety guard refused the plan (exit 3)
    ├── RemoteError                   the API said no; carries method, url (never the token), status
    │   ├── AuthError                 401/403: token missing, revoked or without rights
    │   ├── NotFoundError             404, or a name (fleet slug, release) that resolves to nothing
    │   ├── ConflictError             409: a unique key already taken
    │   ├── RateLimitedError          429; ``retry_after`` in seconds
    │   ├── ClientRequestError        other 4xx: the request itself is wrong; never retried
    │   ├── ServerError               5xx; retried with backoff, then reported per target
    │   ├── TransportError            connection reset, refused, timeout, truncated answer
    │   └── BadResponseError          an answer that is not what balena sends (HTML, wrong types, no ``d``)
    └── RunError                      the run itself failed (exit 4)
        ├── JournalError              the journal cannot be opened or written
        ├── RetryAfterTooLongError    the server asked to wait longer than the configured bound
        └── InterruptedRunError       SIGINT/SIGTERM: dispatch stopped, journal flushed (exit 5)

Messages name the value received and what is accepted. They never contain the API token.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the CLI, distinct per outcome."""

    OK = 0
    SOME_FAILED = 1
    INVALID_INPUT = 2
    REFUSED_BY_GUARD = 3
    RUN_FAILED = 4
    INTERRUPTED = 5
    AWAITING_APPROVAL = 6  # a rollout stage passed its gate; `bulkops approve RUN` starts the next
    ROLLOUT_ABORTED = 7  # a rollout's abort rule tripped (its undo applied with on_abort = "undo")


class BulkopsError(Exception):
    """Base of every error bulkops raises on purpose."""

    exit_code: ExitCode = ExitCode.RUN_FAILED


# --- bad input ---------------------------------------------------------------------------------


class InputError(BulkopsError):
    """Bad input: nothing has been sent to the API."""

    exit_code = ExitCode.INVALID_INPUT


class JobFileError(InputError):
    """A job file is malformed. ``path`` is the file, ``key`` the dotted key at fault (or None)."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = ""
        if path is not None:
            where = f"{path}: " if key is None else f"{path}: [{key}] "
        elif key is not None:
            where = f"[{key}] "
        super().__init__(f"{where}{message}")
        self.detail = message


class FilterSyntaxError(InputError):
    """An OData ``$filter`` does not parse. ``position`` is the 0-based offset into ``text``."""

    def __init__(self, message: str, *, text: str, position: int) -> None:
        self.text = text
        self.position = position
        self.detail = message
        super().__init__(f"{message} at position {position}: {text[:position]}⟶{text[position:]}")


class UnknownFieldError(InputError):
    """A resource, field or navigation name is not in the balena v7 model."""


class PlanFileError(InputError):
    """A plan file cannot be read, or was written by an incompatible version."""


# --- guards ------------------------------------------------------------------------------------


class GuardError(BulkopsError):
    """A safety guard refused to go on (expect bounds, stale plan, changed job, other API, allowlist)."""

    exit_code = ExitCode.REFUSED_BY_GUARD


# --- the remote said no ------------------------------------------------------------------------


class RemoteError(BulkopsError):
    """The API answered with an error, or could not be reached.

    ``url`` is the request URL without credentials; ``status`` is None when no answer arrived;
    ``attempts`` is how many times the client sent the request before giving up.
    """

    attempts: int = 1

    def __init__(
        self, message: str, *, method: str = "", url: str = "", status: int | None = None, body: str = ""
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body
        self.detail = message
        prefix = f"{method} {url}: " if method else ""
        code = f"HTTP {status}: " if status is not None else ""
        super().__init__(f"{prefix}{code}{message}")


class AuthError(RemoteError):
    """401/403: the token is missing, revoked or lacks rights. Never retried; stops a run at once."""


class NotFoundError(RemoteError):
    """404, or a name that resolved to nothing (a fleet slug, a release)."""


class ConflictError(RemoteError):
    """409: a unique key is already taken (e.g. a POST whose earlier answer was lost)."""


class RateLimitedError(RemoteError):
    """429. ``retry_after`` is the server's wait in seconds (0 allowed)."""

    def __init__(self, message: str, *, retry_after: float, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ClientRequestError(RemoteError):
    """Any other 4xx: the request is wrong as sent; retrying cannot help."""


class ServerError(RemoteError):
    """5xx. Retried with jittered backoff, bounded; then reported per target."""


class TransportError(RemoteError):
    """No usable answer: connection refused or reset, timeout, truncated body."""


class BadResponseError(RemoteError):
    """An answer balena would not send: HTML, invalid JSON, wrong types, a missing ``d``."""


# --- the run failed ----------------------------------------------------------------------------


class RunError(BulkopsError):
    """The run could not go on."""


class JournalError(RunError):
    """The journal cannot be created, opened or written."""


class RetryAfterTooLongError(RunError):
    """The server asked for a wait longer than the configured bound; the run stopped cleanly."""

    attempts: int = 1

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class InterruptedRunError(RunError):
    """SIGINT/SIGTERM: dispatch stopped, in-flight requests settled, journal flushed."""

    exit_code = ExitCode.INTERRUPTED
