import pytest
from packaging.version import Version

from app.dists import (
    DistKind,
    metadata_version_problem,
    parse_core_metadata,
    parse_dist_filename,
    read_metadata,
    summary_problem,
)
from app.errors import InvalidDistributionError
from tests.support.builders import make_sdist, make_wheel


@pytest.mark.parametrize(
    ("filename", "name", "version", "kind"),
    [
        ("Foo_Bar-1.0-py3-none-any.whl", "foo-bar", "1.0", DistKind.WHEEL),
        ("foo_bar-2.0rc1-1-cp311-cp311-manylinux_2_17_x86_64.whl", "foo-bar", "2.0rc1", DistKind.WHEEL),
        ("foo_bar-1.0.tar.gz", "foo-bar", "1.0", DistKind.SDIST),
        ("foo-bar-1.0.post1.zip", "foo-bar", "1.0.post1", DistKind.SDIST),
    ],
)
def test_parse_dist_filename(filename, name, version, kind):
    dist = parse_dist_filename(filename)
    assert (dist.name, dist.version, dist.kind) == (name, Version(version), kind)


@pytest.mark.parametrize(
    "filename",
    [
        "foo-1.0.exe",
        "foo-1.0.egg",
        "foo-1.0.tar.bz2",
        "../foo-1.0.tar.gz",
        "foo-1.0-py3-none-any.whl/x",
        "foo.whl",
    ],
)
def test_bad_filenames(filename):
    with pytest.raises(InvalidDistributionError):
        parse_dist_filename(filename)


def test_read_metadata_from_wheel_and_sdist(tmp_path):
    whl = make_wheel(tmp_path, "Demo", "1.0", requires_dist=("dep>=1",), requires_python=">=3.9", description="# Hi")
    meta = read_metadata(whl, parse_dist_filename(whl.name), whl.name)
    assert (meta.name, meta.version, meta.requires_python, meta.requires_dist) == (
        "Demo",
        "1.0",
        ">=3.9",
        ("dep>=1",),
    )
    assert meta.description == "# Hi"
    assert meta.raw.startswith(b"Metadata-Version: 2.1\nName: Demo\n")
    sdist = make_sdist(tmp_path, "Demo", "1.0", summary="S")
    assert read_metadata(sdist, parse_dist_filename(sdist.name), sdist.name).summary == "S"


def test_metadata_needs_name_and_version():
    with pytest.raises(InvalidDistributionError, match="Name"):
        parse_core_metadata(b"Metadata-Version: 2.1\nSummary: x\n", "f.whl")


def test_a_body_beside_a_description_header_keeps_its_non_ascii_text():
    # parse_email leaves the description out when both are given; the body is then read as text
    raw = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nDescription: header\n\ncafé ünïcode ✓\n".encode()
    assert parse_core_metadata(raw, "demo-1.0.tar.gz").description == "café ünïcode ✓\n"


@pytest.mark.parametrize("value", ["1.0", "1.1", "1.2", "2.0", "2.1", "2.4", "2.5", "2.10", "2.999", " 2.1 "])
def test_metadata_versions_accepted_for_upload(value):
    assert metadata_version_problem(value) is None


@pytest.mark.parametrize(
    "value", [None, "", " ", "banana", "1.3", "3.0", "0.9", "2", "2.1.0", "v2.1", "2.1000", "\uff12.1"]
)
def test_metadata_versions_refused_for_upload(value):
    assert metadata_version_problem(value)


@pytest.mark.parametrize(
    ("value", "refused"),
    [(None, False), ("", False), ("x" * 512, False), ("x" * 513, True), ("a\nb", True), ("a\r", True),
     ("a\x0bb", True), ("a\x85b", True), ("a\u2029b", True), ("tab\tand unicode ✓", False)],
)  # fmt: skip
def test_summary_rules_for_upload(value, refused):
    assert bool(summary_problem(value)) is refused
