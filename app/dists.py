"""Names, versions and filenames: the one wrapper over ``packaging``; metadata extraction.

Nothing else in Packhouse normalises a name or parses a filename by hand.
"""

from __future__ import annotations

import bz2
import enum
import gzip
import lzma
import re
import struct
import tarfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from email.parser import Parser
from functools import lru_cache
from pathlib import Path
from typing import IO

from packaging.metadata import parse_email
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from app.errors import InvalidDistributionError

#: Largest METADATA / PKG-INFO we read (PyPI's descriptions are far smaller).
MAX_METADATA_BYTES = 16 * 1024 * 1024
#: The longest distribution filename: its PEP 658 metadata file, "<filename>.metadata", must still
#: fit a filesystem's 255-byte name limit (the package folder stores it under that name).
MAX_FILENAME = 255 - len(".metadata")
#: How far into a tarball we look for PKG-INFO before giving up (bounds time on hostile input).
MAX_TAR_SCAN_BYTES = 512 * 1024 * 1024
MAX_TAR_MEMBERS = 20_000
#: An archive member claiming more than this ratio of its compressed size is a zip bomb.
MAX_COMPRESSION_RATIO = 1000
MAX_MEMBER_BYTES = 8 * 1024**3

#: What the standard library's zip, tar and gzip readers raise on a damaged or unsupported archive:
#: BadZipFile, TarError, EOFError (truncated), OSError (BadGzipFile, bz2's invalid stream),
#: ValueError, KeyError, RuntimeError (an encrypted zip member; NotImplementedError, an unsupported
#: compression method, is one), zlib.error (a corrupt deflate stream), lzma.LZMAError, struct.error
#: (a damaged header), IndexError and OverflowError (header fields out of range).
UNREADABLE_ARCHIVE_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    RuntimeError,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    IndexError,
    OverflowError,
)


class DistKind(enum.StrEnum):
    WHEEL = "bdist_wheel"
    SDIST = "sdist"


@dataclass(frozen=True, slots=True)
class DistFilename:
    name: NormalizedName
    version: Version
    kind: DistKind


@dataclass(frozen=True, slots=True)
class CoreMetadata:
    """The parts of a distribution's core metadata the index keeps."""

    name: str
    version: str
    summary: str | None
    requires_python: str | None
    requires_dist: tuple[str, ...]
    description: str | None
    description_content_type: str | None
    metadata_version: str | None
    raw: bytes  # the METADATA / PKG-INFO file, served as-is for PEP 658


# PEP 792 project status markers. A project has exactly one; ``active`` is stored as no status.
# archived and quarantined take no new files; quarantined ones offer none of theirs for download.
PROJECT_STATUSES = ("active", "archived", "quarantined", "deprecated")
CLOSED_TO_UPLOADS = frozenset({"archived", "quarantined"})
MAX_STATUS_REASON = 1000


def normalize(name: str) -> NormalizedName:
    """PEP 503 normalisation."""
    return canonicalize_name(name)


def parse_version(text: str) -> Version:
    """The one way a version from outside (a form, a URL, metadata) is parsed: anything ``packaging``
    refuses is the domain error (-> 400, or 404 where a URL names it)."""
    try:
        return Version(text)
    except InvalidVersion:
        problem = "versions must follow PEP 440 (e.g. 1.0, 2.1.3rc1, 1.0.post1)"
    except ValueError:  # a release number too long to be an int (Python's 4300-digit limit)
        problem = "a part of it is too long to be a number"
    shown = text if len(text) <= 80 else text[:60] + "..."
    raise InvalidDistributionError(f"Invalid version {shown!r}: {problem}.")


def check_project_name(name: str) -> NormalizedName:
    try:
        return canonicalize_name(name, validate=True)
    except ValueError:
        raise InvalidDistributionError(
            f"Invalid project name {name!r}: names are ASCII letters, digits, '.', '-' and '_', "
            "starting and ending with a letter or digit."
        ) from None


@lru_cache(maxsize=4096)  # the same few spellings come back on every page
def release_key(version: str) -> Version | str:
    """What identifies a release: its version under PEP 440 equality, as on PyPI ('1.0', '1.0.0'
    and '1' are one release; ``Version`` hashes and compares that way). A stored string that is
    not a version (none should be) stands for itself."""
    try:
        return Version(version)
    except (InvalidVersion, ValueError):  # ValueError: an integer too long to convert
        return version


def pick_latest(versions: Iterable[str], yanked: set[str]) -> str:
    """The latest of a project's releases (named as release_labels names them), as PyPI chooses
    it: the highest final version not yanked, else the highest not yanked, else the highest."""
    ordered = sorted(versions, key=_version_order, reverse=True)
    live = [v for v in ordered if v not in yanked] or ordered
    final = [v for v in live if isinstance(key := release_key(v), Version) and not key.is_prerelease]
    return (final or live)[0]


def _version_order(text: str) -> tuple[int, Version | str]:
    key = release_key(text)
    return (1, key) if isinstance(key, Version) else (0, key)


def release_labels(versions: Iterable[str]) -> dict[str, str]:
    """Each spelling -> the spelling that names its release: the first one met, in the order given.

    Callers pass the versions of a project's files oldest first, so a release keeps the spelling it
    was first uploaded with, as PyPI keeps its Release.version (a later 1.0.0 file joins release 1.0).
    """
    labels: dict[str, str] = {}
    by_key: dict[Version | str, str] = {}
    for version in versions:
        if version not in labels:
            labels[version] = by_key.setdefault(release_key(version), version)
    return labels


def check_safe_filename(filename: str) -> None:
    """Refuse anything that could name a path or hide a character: only printable ASCII, no
    separators, no leading dot. (Every valid wheel or sdist name passes.)"""
    problem = None
    if not filename:
        problem = "it is empty"
    elif any(c in filename for c in "/\\"):
        problem = "it contains a path separator"
    elif filename.startswith(".") or ".." in filename:
        problem = "it contains '..' or starts with a dot"
    elif any(unicodedata.category(c) == "Cc" for c in filename):
        problem = "it contains a control character"
    elif not filename.isascii():
        problem = "it contains non-ASCII characters"
    elif not filename.isprintable() or " " in filename:
        problem = "it contains a space or an unprintable character"
    elif len(filename) > MAX_FILENAME:
        problem = f"it is longer than {MAX_FILENAME} characters"
    if problem:
        raise InvalidDistributionError(
            f"Invalid filename {filename!r}: {problem}. Upload the file exactly as your build tool "
            "named it (a wheel or an sdist)."
        )


def parse_dist_filename(filename: str) -> DistFilename:
    """Parse a wheel (PEP 427/491) or sdist (PEP 625: .tar.gz; legacy .zip) filename."""
    check_safe_filename(filename)
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            return DistFilename(name, version, DistKind.WHEEL)
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            return DistFilename(name, version, DistKind.SDIST)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise InvalidDistributionError(f"Invalid distribution filename {filename!r}: {exc}") from None
    raise InvalidDistributionError(
        f"Invalid distribution filename {filename!r}: only wheels (.whl) and source distributions "
        "(.tar.gz, or legacy .zip) can be uploaded."
    )


def read_metadata(path: Path, dist: DistFilename, filename: str, *, whole: bool = False) -> CoreMetadata:
    """Read METADATA from a wheel or PKG-INFO from an sdist, with bounded memory and time.

    ``whole`` (uploads): a gzip-compressed sdist is also read to its end, so that a stream that is
    truncated or damaged after PKG-INFO (its CRC and length do not match) is refused, as PyPI
    refuses it, rather than stored for pip to fail on. A package folder's files are indexed as
    they are (pypiserver served them as they were).

    Blocking: run it in a thread. Raises InvalidDistributionError for anything unreadable."""
    try:
        if dist.kind is DistKind.WHEEL:
            raw = _wheel_metadata(path, dist, filename)
        elif filename.endswith(".zip"):
            raw = _zip_sdist_pkg_info(path)
        else:  # .tar.gz, or in a package folder the legacy .tgz / .tar.bz2 (LEGACY_SDIST_SUFFIXES)
            raw = _tar_sdist_pkg_info(path, "bz2" if filename.endswith(".tar.bz2") else "gz", whole=whole)
    except InvalidDistributionError:
        raise
    except UNREADABLE_ARCHIVE_ERRORS as exc:
        kind = "a zip archive"
        if not filename.endswith((".whl", ".zip")):
            kind = f"a {'bzip2' if filename.endswith('.tar.bz2') else 'gzip'}-compressed tar archive"
        why = str(exc) or type(exc).__name__
        raise InvalidDistributionError(
            f"{filename} is not a valid distribution: it could not be read as {kind} ({why}). "
            "Rebuild it (python -m build) and upload again."
        ) from None
    return parse_core_metadata(raw, filename)


def _member_size_ok(info: zipfile.ZipInfo) -> None:
    if info.file_size > MAX_MEMBER_BYTES or (
        info.file_size > 64 * 1024**2 and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
    ):
        raise InvalidDistributionError(
            f"Archive member {info.filename!r} claims {info.file_size} bytes uncompressed from "
            f"{info.compress_size} compressed: refusing a likely zip bomb."
        )


def _read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_METADATA_BYTES:
        raise InvalidDistributionError(
            f"{info.filename} is {info.file_size} bytes; metadata larger than {MAX_METADATA_BYTES} bytes is refused."
        )
    with zf.open(info) as fh:
        data = fh.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise InvalidDistributionError(f"{info.filename} is larger than its header says: refused.")
    return data


def _wheel_metadata(path: Path, dist: DistFilename, filename: str) -> bytes:
    """The wheel's METADATA, found the way pip finds it (``wheel_dist_info_dir``): exactly one
    top-level ``*.dist-info`` folder, whose normalised name starts with the project's normalised
    name; ``METADATA`` in it. A wheel pip would refuse to install is refused here."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        for info in infos:
            _member_size_ok(info)
        expected = "-".join(filename.split("-")[:2]) + ".dist-info/METADATA"  # as PyPI words it
        info_dirs = sorted({i.filename.split("/", 1)[0] for i in infos} - {""})
        info_dirs = [d for d in info_dirs if d.endswith(".dist-info")]
        problem = None
        if not info_dirs:
            problem = "it has no .dist-info folder"
        elif len(info_dirs) > 1:
            found = ", ".join(info_dirs)
            problem = f"it has {len(info_dirs)} .dist-info folders ({found}) and pip needs exactly one"
        elif not canonicalize_name(info_dirs[0]).startswith(dist.name):
            problem = f"its .dist-info folder {info_dirs[0]!r} is not named after the project {dist.name!r}"
        if problem is None:
            try:
                metadata = zf.getinfo(f"{info_dirs[0]}/METADATA")
            except KeyError:
                problem = f"its {info_dirs[0]!r} folder has no METADATA file"
        if problem is not None:
            raise InvalidDistributionError(
                f"{filename} is not a valid wheel: it does not contain the required METADATA file "
                f"{expected} ({problem}). pip would refuse to install it; rebuild it (python -m build)."
            )
        return _read_zip_member(zf, metadata)


def _zip_sdist_pkg_info(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        for info in infos:
            _member_size_ok(info)
        for info in infos:
            parts = info.filename.split("/")
            if len(parts) == 2 and parts[1] == "PKG-INFO":
                return _read_zip_member(zf, info)
    raise InvalidDistributionError("The sdist has no '<name>-<version>/PKG-INFO' at its top level.")


#: The most ``_LastRead`` hands tarfile in one read: PKG-INFO's cap and a tar block more.
MAX_TAR_READ = MAX_METADATA_BYTES + 512


class _LastRead:
    """A file object that remembers its last read: the header block where tarfile stopped."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.last = b""

    def read(self, size: int = -1) -> bytes:
        # tarfile reads a pax or GNU long-name header's payload in one read of the size the header
        # claims: a few hundred KB of gzip can claim gigabytes. PKG-INFO is read within the cap.
        if size < 0 or size > MAX_TAR_READ:
            raise InvalidDistributionError(
                f"The sdist's tar data has a header entry of {size} bytes (a pax or GNU long-name "
                f"header, normally a few hundred); more than {MAX_TAR_READ} is refused. Rebuild the sdist."
            )
        self.last = self.raw.read(size)
        return self.last

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


#: How much of a compressed sdist ``whole`` decompresses in one read while checking its stream.
_DRAIN_CHUNK = 1024 * 1024


def _tar_sdist_pkg_info(path: Path, compression: str = "gz", *, whole: bool = False) -> bytes:
    """The PKG-INFO of a gzip (or, for legacy folder files, bzip2) compressed tar sdist.

    ``whole``: the compressed stream is read to its end after PKG-INFO (up to MAX_TAR_SCAN_BYTES
    decompressed, which bounds the time a compression bomb can take), so the reader checks its
    CRC and length and sees a truncation: each raises one of UNREADABLE_ARCHIVE_ERRORS."""
    opener = bz2.open if compression == "bz2" else gzip.open
    with opener(path, "rb") as raw:
        pkg_info = _tar_pkg_info(raw)
        if whole:
            while raw.tell() <= MAX_TAR_SCAN_BYTES and raw.read(_DRAIN_CHUNK):
                pass
        return pkg_info


def _tar_pkg_info(raw: IO[bytes]) -> bytes:
    fh = _LastRead(raw)
    with tarfile.open(fileobj=fh, mode="r:") as tf:  # type: ignore[call-overload]
        for count, member in enumerate(tf):
            if count > MAX_TAR_MEMBERS or member.offset_data > MAX_TAR_SCAN_BYTES:
                break
            parts = member.name.strip("/").split("/")
            if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                if member.size > MAX_METADATA_BYTES:
                    raise InvalidDistributionError(f"{member.name} is {member.size} bytes: refused.")
                extracted = tf.extractfile(member)
                assert extracted is not None
                return extracted.read(MAX_METADATA_BYTES)
        else:
            # tarfile ends its listing quietly at a header it cannot parse: only the end of the
            # data or an end-of-archive block (zeros) is a real end; anything else is damage.
            if fh.last.strip(tarfile.NUL):
                raise tarfile.ReadError(f"a damaged member header at byte {tf.offset} of the tar data")
    raise InvalidDistributionError("The sdist has no '<name>-<version>/PKG-INFO' at its top level.")


#: Old sdist names found in pypiserver folders (setuptools once wrote them; pip still installs them).
#: Indexed where they lie by ``packhouse run`` and ``packhouse import`` (``parse_folder_filename``;
#: ``read_metadata`` reads them), never accepted as uploads (``parse_dist_filename`` refuses them).
LEGACY_SDIST_SUFFIXES = (".tgz", ".tar.bz2")


def python_tag(filename: str, dist: DistFilename) -> str:
    """What the legacy upload form's ``pyversion`` says for this file, as twine derives it: a
    wheel's Python tag (PEP 427: {name}-{ver}(-{build})?-{python tag}-{abi tag}-{platform tag}.whl),
    "source" for an sdist. ``filename`` is one ``dist`` was parsed from."""
    if dist.kind is DistKind.SDIST:
        return "source"
    return filename[: -len(".whl")].split("-")[-3]


def parse_folder_filename(filename: str) -> DistFilename:
    """``parse_dist_filename``, and the legacy sdist names of LEGACY_SDIST_SUFFIXES too."""
    legacy = next((s for s in LEGACY_SDIST_SUFFIXES if filename.endswith(s)), None)
    if legacy is None:
        return parse_dist_filename(filename)
    check_safe_filename(filename)
    try:
        name, version = parse_sdist_filename(filename[: -len(legacy)] + ".tar.gz")
    except (InvalidSdistFilename, InvalidVersion) as exc:
        raise InvalidDistributionError(f"Invalid distribution filename {filename!r}: {exc}") from None
    return DistFilename(name, version, DistKind.SDIST)


def parse_core_metadata(raw: bytes, filename: str) -> CoreMetadata:
    """Parse METADATA / PKG-INFO (RFC 822 style) leniently, requiring a valid Name and Version."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidDistributionError(f"The metadata in {filename} is not valid UTF-8.") from None
    if "\x00" in text:  # never in real metadata, and PostgreSQL refuses it in text (a 500 otherwise)
        raise InvalidDistributionError(
            f"The metadata in {filename} contains a NUL character in {_nul_field(text)}; "
            "remove it and rebuild the distribution."
        )
    parsed, _unparsed = parse_email(text)
    name, version = parsed.get("name"), parsed.get("version")
    if not name or not version:
        raise InvalidDistributionError(
            f"The metadata in {filename} does not parse: it needs 'Name:' and 'Version:' headers."
        )
    check_project_name(name)
    parse_version(version)
    description = parsed.get("description")
    if description is None:  # body of the message (Metadata 2.1+)
        # The decoded text, not the bytes: BytesParser keeps non-ASCII bytes as surrogate escapes.
        msg: Message = Parser().parsestr(text)
        payload = msg.get_payload()
        description = payload if isinstance(payload, str) and payload.strip() else None
    return CoreMetadata(
        name=name,
        version=version,
        summary=parsed.get("summary"),
        requires_python=parsed.get("requires_python"),
        requires_dist=tuple(parsed.get("requires_dist") or ()),
        description=description,
        description_content_type=parsed.get("description_content_type"),
        metadata_version=parsed.get("metadata_version"),
        raw=raw,
    )


def requires_python_problem(value: str | None) -> str | None:
    """Why a Requires-Python value is not a PEP 440 version specifier, or None if it is (or is
    absent). Installers read it from the index (``data-requires-python``): pip skips a value it
    cannot parse, uv refuses the file outright, so the index must not publish one."""
    if value is None or not value.strip():
        return None
    if any(not part.strip() for part in value.split(",")):
        return "an empty specifier between commas, which uv refuses"
    try:
        SpecifierSet(value)
    except InvalidSpecifier as exc:
        return str(exc) or "not a version specifier"
    return None


#: PyPI's limit (warehouse/forklift/metadata.py, ``_LENGTH_LIMITS = {"summary": 512}``), in characters.
MAX_SUMMARY_CHARS = 512
#: Metadata-Version values an upload may declare: the 1.x series is closed (1.0, 1.1, 1.2), and any
#: 2.x. The core metadata spec: "Automated tools consuming metadata SHOULD warn if metadata_version
#: is greater than the highest version they support, and MUST fail if metadata_version has a greater
#: major version than the highest version they support." So a newer 2.x (a backend ahead of this
#: server) is accepted, and so is 2.0, which old bdist_wheel wrote (PyPI and packaging refuse it).
#: The bounded minor also keeps the value within its column (String(10)).
_METADATA_VERSION = re.compile(r"1\.[012]|2\.[0-9]{1,3}")


def metadata_version_problem(value: str | None) -> str | None:
    """Why a Metadata-Version value is refused for an upload, or None if it is accepted."""
    if value is None or not value.strip():
        return "it does not declare its Metadata-Version (exactly one 'Metadata-Version:' header is required)"
    if not _METADATA_VERSION.fullmatch(value.strip()):
        shown = value if len(value) <= 40 else value[:30] + "..."
        return f"its Metadata-Version {shown!r} is not a core metadata version (1.0, 1.1, 1.2 or 2.x, e.g. 2.4)"
    return None


def summary_problem(value: str | None) -> str | None:
    """Why a Summary value is refused for an upload (PyPI refuses the same), or None."""
    if value is None:
        return None
    # Core metadata: "A one-line summary". str.splitlines() breaks at exactly the line boundaries
    # packaging.metadata refuses in a Summary (\n, \r, \v, \f, \x1c-\x1e, \x85, \u2028, \u2029).
    if "".join(value.splitlines()) != value:
        return "its Summary spans more than one line"
    if len(value) > MAX_SUMMARY_CHARS:
        return f"its Summary is {len(value)} characters long, over the limit of {MAX_SUMMARY_CHARS}"
    return None


def _nul_field(text: str) -> str:
    """Where in a METADATA / PKG-INFO text the NUL character is, in words."""
    msg = Parser().parsestr(text)
    for key, value in msg.items():
        if "\x00" in key or "\x00" in str(value):
            return f"its {key.strip()!r} field"
    return "its description (the body after the headers)"
