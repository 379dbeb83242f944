"""Packaging: the wheel carries what the library reads at run time; an installed wheel runs a checkout's pipeline."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # pip builds and installs a wheel, then runs the pipeline script from it


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):  # build from a copy: setuptools writes build/ beside the sources
        shutil.copy(REPO / name, source)
    shutil.copytree(REPO / "voicelib", source / "voicelib", ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                             "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {result.stderr.strip().splitlines()[-1:]}")
    return next(out.glob("voicelib-*.whl"))


def test_wheel_carries_the_package_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {"voicelib/data/texts/hi.txt", "voicelib/data/texts/en.txt", "voicelib/stages/runner.py",
            "voicelib/serve/web/index.html"} <= set(names)
    assert not any(n.startswith(("notebooks/", "tests/", "bench/")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    for needed in ("papermill", "nbconvert", "nbformat", "ipykernel", "torch==2.13.0"):
        assert f"Requires-Dist: {needed}" in metadata, needed
    assert "Provides-Extra: notebooks" in metadata


def test_an_installed_wheel_runs_the_pipeline_of_a_checkout(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    checkout = tmp_path / "checkout"  # notebooks, configs and the runner script, but no voicelib/ folder
    for name in ("notebooks", "configs"):
        shutil.copytree(REPO / name, checkout / name)
    shutil.copy(REPO / "run_pipeline.py", checkout)
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    listed = subprocess.run([sys.executable, "run_pipeline.py", "--list-params"], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "training" in listed.stdout and "epochs" in listed.stdout
    which = subprocess.run([sys.executable, "-c", "import voicelib; print(voicelib.__file__)"], cwd=checkout, env=env,
                           capture_output=True, text=True, timeout=60)
    assert which.stdout.startswith(str(site))  # the wheel's copy, not the repository's
    bad = subprocess.run([sys.executable, "run_pipeline.py", "--language", "hindi", "--epochs", "0"], cwd=checkout,
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "epochs=0 is out of range" in bad.stderr
