"""Whatever an archive holds, ``read_metadata`` returns its metadata or raises the one domain error
(-> 400 on upload, "reported and skipped" in a folder scan): damaged or unsupported archives,
huge version numbers, NUL characters in metadata, and wheels pip would refuse to install."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import dists
from app.errors import InvalidDistributionError
from tests.support import damage
from tests.support.builders import make_sdist, make_wheel, metadata_text, zip_bytes

META = "demo-2.0.dist-info/METADATA"
BIG = "1." + "0" * 5000  # a release number longer than Python's 4300-digit int conversion limit


def read(path: Path, filename: str | None = None) -> dists.CoreMetadata:
    filename = filename or path.name
    return dists.read_metadata(path, dists.parse_dist_filename(filename), filename)


def write(tmp_path: Path, filename: str, data: bytes) -> Path:
    path = tmp_path / "out" / filename
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


ZIP_DAMAGE = {
    "unsupported-method": damage.zip_member_method,  # NotImplementedError
    "encrypted": damage.zip_member_encrypted,  # RuntimeError
    "corrupt-deflate": damage.zip_member_corrupt,  # zlib.error
}


@pytest.mark.parametrize("how", ZIP_DAMAGE)
def test_a_wheel_whose_metadata_cannot_be_read_is_an_invalid_distribution(tmp_path, how):
    wheel = make_wheel(tmp_path, "demo", "2.0", description="a long README line\n" * 500)
    path = write(tmp_path, wheel.name, ZIP_DAMAGE[how](wheel.read_bytes(), META))
    with pytest.raises(InvalidDistributionError, match="could not be read as a zip archive"):
        read(path)


@pytest.mark.parametrize("how", ZIP_DAMAGE)
def test_a_zip_sdist_whose_pkg_info_cannot_be_read_is_an_invalid_distribution(tmp_path, how):
    pkg_info = (metadata_text("demo", "2.0") + "text\n" * 500).encode()
    data = zip_bytes({"demo-2.0/PKG-INFO": pkg_info, "demo-2.0/setup.py": b""})
    path = write(tmp_path, "demo-2.0.zip", ZIP_DAMAGE[how](data, "demo-2.0/PKG-INFO"))
    with pytest.raises(InvalidDistributionError, match="could not be read as a zip archive"):
        read(path)


TAR_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "damaged-header-before-pkg-info": lambda data: damage.targz_damaged_header(damage.targz_pkg_info_last(data)),
    "corrupt-deflate": damage.targz_corrupt_deflate,
    "truncated": lambda data: damage.targz_truncated(damage.targz_pkg_info_last(data)),
}


@pytest.mark.parametrize("how", TAR_DAMAGE)
def test_a_damaged_tar_gz_says_it_could_not_be_read_not_that_pkg_info_is_missing(tmp_path, how):
    sdist = make_sdist(tmp_path, "demo", "2.0")
    path = write(tmp_path, sdist.name, TAR_DAMAGE[how](sdist.read_bytes()))
    with pytest.raises(InvalidDistributionError, match="could not be read as a gzip-compressed tar archive"):
        read(path)


TAIL_DAMAGE = [damage.targz_tail_corrupt, damage.targz_wrong_crc, damage.targz_tail_truncated]


@pytest.mark.parametrize("how", TAIL_DAMAGE, ids=lambda f: f.__name__)
def test_whole_reads_a_tar_gz_to_its_end_and_a_folder_read_stops_at_pkg_info(tmp_path, how):
    sdist = make_sdist(tmp_path, "demo", "2.0")
    path = write(tmp_path, sdist.name, how(sdist.read_bytes()))
    dist = dists.parse_dist_filename(sdist.name)
    assert dists.read_metadata(path, dist, sdist.name).version == "2.0"  # a package folder's file
    with pytest.raises(InvalidDistributionError, match="could not be read as a gzip-compressed tar archive"):
        dists.read_metadata(path, dist, sdist.name, whole=True)  # an upload
    assert dists.read_metadata(sdist, dist, sdist.name, whole=True).version == "2.0"


def test_an_intact_sdist_without_pkg_info_still_says_so(tmp_path):
    sdist = make_sdist(tmp_path, "demo", "2.0")
    reordered = damage.targz_pkg_info_last(sdist.read_bytes())
    assert read(write(tmp_path, sdist.name, reordered)).version == "2.0"  # the reordering alone is fine
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("demo-2.0/setup.py")
        tf.addfile(info, io.BytesIO(b""))
    path = write(tmp_path, sdist.name, gzip.compress(buf.getvalue()))
    with pytest.raises(InvalidDistributionError, match=r"has no '<name>-<version>/PKG-INFO'"):
        read(path)


FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("archives")
    wheel = make_wheel(folder, "demo", "2.0", description="README\n" * 200)
    sdist = make_sdist(folder, "demo", "2.0", description="README\n" * 200)
    return {wheel.name: wheel.read_bytes(), sdist.name: damage.targz_pkg_info_last(sdist.read_bytes())}


@FUZZ
@given(
    which=st.sampled_from(["demo-2.0-py3-none-any.whl", "demo-2.0.tar.gz"]),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=8),
    cut=st.none() | st.floats(0, 1),
)
def test_damaged_archives_never_raise_anything_but_the_domain_error(archives, tmp_path_factory, which, flips, cut):
    data = bytearray(archives[which])
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    if cut is not None:
        data = data[: int(cut * len(data))]
    path = tmp_path_factory.mktemp("fuzz") / which
    path.write_bytes(bytes(data))
    try:
        meta = read(path)
    except InvalidDistributionError:
        return
    assert dists.normalize(meta.name) == "demo"


def test_a_version_too_long_for_an_int_is_the_invalid_version_error():
    with pytest.raises(InvalidDistributionError, match="too long to be a number") as caught:
        dists.parse_version(BIG)
    assert len(caught.value.detail) < 200  # the version is not echoed in full
    with pytest.raises(InvalidDistributionError, match="Invalid version"):
        dists.parse_core_metadata(f"Metadata-Version: 2.1\nName: demo\nVersion: {BIG}\n".encode(), "x")


HEAD = "Metadata-Version: 2.1\nName: demo\nVersion: 2.0\n"


@pytest.mark.parametrize(
    ("metadata", "where"),
    [
        pytest.param(HEAD + "Summary: a\x00b\n", "'Summary' field", id="summary"),
        pytest.param(HEAD + "Requires-Python: >=3\x00\n", "'Requires-Python' field", id="requires-python"),
        pytest.param(HEAD + "Keywords: x\x00\n", "'Keywords' field", id="not-stored-field"),
        pytest.param(HEAD + "\nREADME\x00\n", "description (the body", id="description"),
    ],
)
def test_a_nul_character_in_metadata_is_refused_naming_where(metadata, where):
    with pytest.raises(InvalidDistributionError, match="contains a NUL character") as caught:
        dists.parse_core_metadata(metadata.encode(), "demo-2.0-py3-none-any.whl")
    assert where in caught.value.detail


GOOD_METADATA = metadata_text("demo-pkg", "2.0").encode()
WHEEL = "demo_pkg-2.0-py3-none-any.whl"
DIST_INFO_CASES = {
    # accepted by pip: one .dist-info folder whose normalised name starts with the project's
    "escaped": ({"demo_pkg-2.0.dist-info/METADATA": GOOD_METADATA}, None),
    "other-spelling": ({"Demo.Pkg-2.0.dist-info/METADATA": GOOD_METADATA}, None),
    "other-version-spelling": ({"demo_pkg-2.0.0.dist-info/METADATA": GOOD_METADATA}, None),
    # refused by pip ("does not start with", "multiple .dist-info directories", "not found")
    "wrong-name": ({"zzz-9.dist-info/METADATA": GOOD_METADATA}, "is not named after the project 'demo-pkg'"),
    "two-dist-info": (
        {"demo_pkg-2.0.dist-info/METADATA": GOOD_METADATA, "other-1.0.dist-info/METADATA": GOOD_METADATA},
        "2 .dist-info folders",
    ),
    "no-dist-info": ({"demo_pkg/__init__.py": b""}, "no .dist-info folder"),
    "nested-metadata": ({"demo_pkg-2.0.dist-info/sub/METADATA": GOOD_METADATA}, "has no METADATA file"),
    "metadata-as-folder": ({"demo_pkg-2.0.dist-info/METADATA/": b""}, "has no METADATA file"),
}


@pytest.mark.parametrize("case", DIST_INFO_CASES)
def test_the_dist_info_folder_is_found_as_pip_finds_it(tmp_path, case):
    from pip._internal.exceptions import UnsupportedWheel
    from pip._internal.utils.wheel import wheel_dist_info_dir

    members, refusal = DIST_INFO_CASES[case]
    path = write(tmp_path, WHEEL, zip_bytes(members))
    with zipfile.ZipFile(path) as zf:
        try:
            info_dir = wheel_dist_info_dir(zf, "demo-pkg")
            pip_reads = f"{info_dir}/METADATA" in zf.namelist()
        except UnsupportedWheel:
            pip_reads = False
    assert pip_reads == (refusal is None)  # the cases mean what they say
    if refusal is None:
        assert read(path).name == "demo-pkg"
        return
    with pytest.raises(InvalidDistributionError) as caught:
        read(path)
    detail = caught.value.detail
    assert "does not contain the required METADATA file demo_pkg-2.0.dist-info/METADATA" in detail
    assert refusal in detail and "pip would refuse to install it" in detail
