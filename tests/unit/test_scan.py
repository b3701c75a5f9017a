from pathlib import Path

from app.services.scan import walk_folder


def test_dist_files_walks_like_pypiserver(tmp_path: Path):
    root = tmp_path / "packages"
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / ".packhouse" / "metadata").mkdir(parents=True)
    for rel in ("a-1.0-py3-none-any.whl", "nested/b-1.0.tar.gz", "nested/deeper/c-1.0.zip", "README.txt",
                ".hidden-1.0.tar.gz", ".packhouse/metadata/a-1.0-py3-none-any.whl.metadata"):  # fmt: skip
        (root / rel).write_bytes(b"x")
    outside = tmp_path / "elsewhere-1.0.tar.gz"
    outside.write_bytes(b"x")
    (root / "elsewhere-1.0.tar.gz").symlink_to(outside)
    (root / "inside-link-1.0.tar.gz").symlink_to(root / "nested" / "b-1.0.tar.gz")
    assert walk_folder(root).files == [
        "a-1.0-py3-none-any.whl", "inside-link-1.0.tar.gz", "nested/b-1.0.tar.gz", "nested/deeper/c-1.0.zip",
    ]  # fmt: skip
