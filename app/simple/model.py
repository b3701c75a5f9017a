"""The view model of the Simple Repository API, rendered as PEP 503 HTML and PEP 691 JSON.

Essential reading: PEP 503 (simple HTML), PEP 629 (api-version), PEP 691 (JSON, negotiation),
PEP 700 (versions, size, upload-time), PEP 658/714 (core metadata), PEP 592 (yanking), PEP 792
(project status markers).
"""

from __future__ import annotations

from dataclasses import dataclass

# PEP 700 fields need api-version 1.1 or later, PEP 792 status markers 1.4. The optional fields of
# 1.2 (PEP 708 tracks, alternate locations) and 1.3 (PEP 740 provenance) are not served: a client
# reads their absence as none.
API_VERSION = "1.4"


@dataclass(frozen=True, slots=True)
class ProjectEntry:
    name: str  # display name
    normalized_name: str  # PEP 503: the URL component


@dataclass(frozen=True, slots=True)
class ProjectList:
    projects: tuple[ProjectEntry, ...]


@dataclass(frozen=True, slots=True)
class DistFile:
    filename: str
    url: str  # relative to the page URL, query-free
    sha256: str
    size: int  # PEP 700: mandatory at api-version 1.1
    upload_time: str  # PEP 700: ISO 8601 "yyyy-mm-ddThh:mm:ss.ffffffZ", UTC
    requires_python: str | None = None
    # PEP 592: False, or True / a reason string
    yanked: bool | str = False
    # PEP 658/714: sha256 of the metadata file served at url + ".metadata", None if not available
    core_metadata_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class ProjectDetail:
    name: str  # normalised name (PEP 691: "name" is the normalised name)
    files: tuple[DistFile, ...]
    # PEP 700: every version of the project, including those without files
    versions: tuple[str, ...]
    # PEP 792: None is active (no marker is served); a quarantined project lists no files
    status: str | None = None
    status_reason: str | None = None
