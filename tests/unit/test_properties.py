"""Property tests (hypothesis) for filename parsing, name normalisation and metadata parsing.

Whatever a client sends, the parsers either accept a safe, well-formed name or raise the one
domain error (-> 400); nothing else escapes, and nothing accepted can name a path.
"""

from __future__ import annotations

import re
import string
from pathlib import PurePosixPath

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from app import dists
from app.errors import InvalidDistributionError

SETTINGS = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

alnum = st.sampled_from(string.ascii_letters + string.digits)
separators = st.text(alphabet="-_.", min_size=1, max_size=3)
# PEP 508 names: letters/digits, with runs of - _ . inside
names = st.builds(
    lambda first, parts: first + "".join(sep + word for sep, word in parts),
    st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8),
    st.lists(
        st.tuples(separators, st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=6)),
        max_size=3,
    ),
)
versions = st.builds(
    lambda release, pre, post, dev: ".".join(map(str, release)) + pre + post + dev,
    st.lists(st.integers(0, 999), min_size=1, max_size=4),
    st.sampled_from(["", "a1", "b2", "rc3"]),
    st.sampled_from(["", ".post1"]),
    st.sampled_from(["", ".dev4"]),
)
hostile_chars = st.sampled_from(
    ["/", "\\", "\x00", "\x07", "\x1b", "\n", "\r", "\x7f", "..", "\u0435", "\uff44", "\u200b", " "]
)
any_filename = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda n, v, ext: f"{n}-{v}{ext}",
        names,
        versions,
        st.sampled_from([".tar.gz", ".zip", "-py3-none-any.whl", ".egg", ".exe", ".tar.bz2", ""]),
    ),
)


def pep503(name: str) -> str:
    """The normalisation rule exactly as PEP 503 writes it (a test oracle only)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@SETTINGS
@given(names)
def test_normalize_follows_pep503_and_is_idempotent(name):
    normalized = dists.normalize(name)
    assert normalized == pep503(name)
    assert dists.normalize(normalized) == normalized
    assert dists.check_project_name(name) == normalized


@SETTINGS
@given(names, st.data())
def test_spellings_that_differ_by_case_and_punctuation_normalise_alike(name, data):
    respelled = "".join(
        data.draw(st.sampled_from(["-", "_", ".", "--", "_."]))
        if c in "-_."
        else data.draw(st.sampled_from([c.lower(), c.upper()]))
        for c in name
    )
    assert dists.normalize(respelled) == dists.normalize(name)


@SETTINGS
@given(names, versions)
def test_wheel_and_sdist_filenames_round_trip(name, version):
    escaped = re.sub(r"[-_.]+", "_", name)
    for filename, kind in (
        (f"{escaped}-{version}-py3-none-any.whl", dists.DistKind.WHEEL),
        (f"{escaped.lower()}-{version}.tar.gz", dists.DistKind.SDIST),
    ):
        parsed = dists.parse_dist_filename(filename)
        assert parsed.name == dists.normalize(name)
        assert parsed.version == Version(version)
        assert parsed.kind is kind


@SETTINGS
@given(any_filename)
@example("../x-1.0.tar.gz")
@example("x-1.0.tar.gz\x00")
@example("/abs/x-1.0.tar.gz")
def test_parsing_any_text_accepts_only_safe_names_or_raises_the_domain_error(filename):
    try:
        parsed = dists.parse_dist_filename(filename)
    except InvalidDistributionError as exc:
        assert exc.detail.startswith("Invalid")  # says what is wrong with the name
        return
    # accepted: it can only ever be one plain file name inside a folder
    assert filename.isascii() and filename.isprintable()
    assert "/" not in filename and "\\" not in filename and not filename.startswith(".")
    assert PurePosixPath("root", filename).parent == PurePosixPath("root")
    assert filename.endswith((".whl", ".tar.gz", ".zip"))
    assert isinstance(parsed.version, Version)


@SETTINGS
@given(names, versions, hostile_chars, st.integers(0, 40))
def test_a_hostile_character_anywhere_is_refused(name, version, bad, where):
    filename = f"{name}-{version}.tar.gz"
    where = min(where, len(filename))
    hostile = filename[:where] + bad + filename[where:]
    try:
        dists.parse_dist_filename(hostile)
    except InvalidDistributionError:
        return
    raise AssertionError(f"accepted {hostile!r}")


@SETTINGS
@given(st.binary(max_size=2000))
def test_metadata_parsing_of_arbitrary_bytes_never_crashes(raw):
    try:
        meta = dists.parse_core_metadata(raw, "x-1.0.tar.gz")
    except InvalidDistributionError:
        return
    assert dists.check_project_name(meta.name)
    assert dists.parse_version(meta.version)


@SETTINGS
@given(names, versions, st.text(max_size=200))
def test_metadata_with_name_and_version_parses_whatever_the_summary(name, version, summary):
    summary = summary.replace("\n", " ").replace("\r", " ").replace("\x00", "")  # NUL: refused (test_dists_robustness)
    raw = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n\nbody".encode()
    meta = dists.parse_core_metadata(raw, "x")
    assert dists.normalize(meta.name) == dists.normalize(name)
    assert Version(meta.version) == Version(version)
