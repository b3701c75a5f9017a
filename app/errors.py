"""The domain exception tree. No web imports: ``app.api.errors`` maps each class to a status."""

from __future__ import annotations


class PackageIndexError(Exception):
    """Root of every error a client may see. ``title`` is the short, human name of the problem."""

    title = "Package index error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(PackageIndexError):
    title = "Not found"


class ProjectNotFoundError(NotFoundError):
    title = "Project not found"


class DistFileNotFoundError(NotFoundError):
    title = "File not found"


class NotAcceptableError(PackageIndexError):
    title = "Not acceptable"


class AuthenticationRequiredError(PackageIndexError):
    title = "Authentication required"


class TooManyLoginFailuresError(AuthenticationRequiredError):
    """A client and user name with too many wrong passwords of late (app/auth/throttle.py)."""

    title = "Too many failed logins"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PermissionDeniedError(PackageIndexError):
    title = "Forbidden"


class ProjectClosedError(PermissionDeniedError):
    """PEP 792: an upload to an archived or quarantined project (403: the index forbids it,
    whoever asks)."""

    title = "Project closed to uploads"


class ProjectQuarantinedError(PermissionDeniedError):
    """PEP 792: a download of a quarantined project's file (403)."""

    title = "Project quarantined"


class InvalidRequestError(PackageIndexError):
    """The request itself is malformed (form, action, content type)."""

    title = "Bad request"


class UnsupportedMediaTypeError(InvalidRequestError):
    title = "Unsupported media type"


class GoneError(PackageIndexError):
    title = "Gone"


class InvalidDistributionError(PackageIndexError):
    """The uploaded file, its name or its metadata is not acceptable."""

    title = "Invalid distribution"


class DigestMismatchError(InvalidDistributionError):
    title = "Digest mismatch"


class FileExistsInIndexError(PackageIndexError):
    """A file of that name exists with other bytes. twine --skip-existing keys on the text
    "File already exists" (and on the 409), so the detail must start with it."""

    title = "File already exists"


class UploadTooLargeError(PackageIndexError):
    title = "Upload too large"


class RequestTimeoutError(InvalidRequestError):
    """The client stopped sending the request body (slow or stalled upload)."""

    title = "Request timeout"


class StorageUnavailableError(PackageIndexError):
    """The file storage (an S3 bucket) could not be reached or refused the server: the server's
    fault, not the request's; the client may try again (503)."""

    title = "Storage unavailable"


class StorageFullError(StorageUnavailableError):
    """The server's disk (or the database's) is full: the upload was not stored, and nothing of it
    was kept. The operator must free space (507 Insufficient Storage)."""

    title = "Insufficient storage"


class DatabaseUnavailableError(StorageUnavailableError):
    """The database server (PostgreSQL) could not be reached, refused the connection or dropped it
    mid-request: the server's fault; the client may try again (503)."""

    title = "Database unavailable"


class ReadOnlyDatabaseError(StorageUnavailableError):
    """The SQLite database file (or the folder holding it) became read-only while the server ran:
    nothing was changed. The operator must make it writable again (503: the server's fault)."""

    title = "Database read-only"
