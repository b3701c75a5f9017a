"""The image's lock files (requirements/*.txt, from `make lock`) hold what pyproject.toml asks for:
a dependency added or narrowed there without `make lock` fails here, not in the image's build."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def locked(name: str, *, hashes: bool = True) -> dict[str, str]:
    """Name -> version of every ``name==version`` line (each with its hashes, if ``hashes``)."""
    out: dict[str, str] = {}
    text = (ROOT / "requirements" / name).read_text()
    for block in text.replace("\\\n", " ").splitlines():  # a requirement and its hashes: one line
        line = block.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line.split(" --hash=")[0].strip())
        assert "--hash=sha256:" in line or not hashes, f"{requirement.name} has no hash in {name}"
        (spec,) = requirement.specifier
        assert spec.operator == "==", line
        out[canonicalize_name(requirement.name)] = spec.version
    return out


def satisfied(lock: str, requirements: list[str], versions: dict[str, str]) -> None:
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in versions, f"{name} is not in requirements/{lock}: run 'make lock'"
        assert requirement.specifier.contains(versions[name], prereleases=True), (
            f"requirements/{lock} has {name} {versions[name]}, pyproject.toml asks {requirement.specifier}: "
            "run 'make lock'"
        )


def test_the_image_lock_satisfies_every_dependency():
    versions = locked("image.txt")
    satisfied("image.txt", PROJECT["project"]["dependencies"], versions)
    assert {"uvloop", "httptools"} <= versions.keys()  # uvicorn[standard]'s extras are locked too


def test_the_test_venvs_lock_satisfies_the_dependencies_and_the_extras():
    """make venv installs with requirements/dev.txt as constraints: every machine tests the same
    releases of everything, pip (a client under test) included."""
    versions = locked("dev.txt", hashes=False)
    extras = PROJECT["project"]["optional-dependencies"]
    satisfied("dev.txt", [*PROJECT["project"]["dependencies"], *extras["test"], *extras["postgres"], *extras["s3"]],
              versions)  # fmt: skip
    assert "pip" in versions
    image = locked("image.txt")
    assert {name: versions[name] for name in image} == image  # the tests run what the image ships


def test_the_build_lock_is_the_build_systems():
    wanted = [Requirement(r) for r in PROJECT["build-system"]["requires"]]
    lines = (ROOT / "requirements" / "build.in").read_text().splitlines()
    given = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    assert [str(r) for r in given] == [str(r) for r in wanted], "requirements/build.in: as [build-system] requires"
    versions = locked("build.txt")
    for requirement in wanted:
        assert requirement.specifier.contains(versions[canonicalize_name(requirement.name)])
