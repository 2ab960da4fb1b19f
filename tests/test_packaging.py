"""The wheel works away from the source checkout: built, installed into a fresh environment without
network (``--no-deps``; the dependencies come from this environment), run from an unrelated folder."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; this environment's site-packages are on its path as plain
    folders (their .pth files, such as this checkout's editable install, are not processed)."""
    tmp = tmp_path_factory.mktemp("wheel")
    pytest.importorskip("setuptools", minversion="77")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        ROOT,
        "-w",
        tmp,
        cwd=tmp,
    )
    wheel = next(tmp.glob("tcupgan-*.whl"))
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp)
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_the_installed_wheel_runs_and_finds_its_configs_outside_the_checkout(installed, tmp_path):
    where = run(installed / "bin" / "python", "-c", "import tcupgan; print(tcupgan.__file__)", cwd=tmp_path)
    assert Path(where).resolve().is_relative_to(installed.resolve()), "tcupgan came from the checkout"
    assert "example:" in run(installed / "bin" / "tcupgan", "demo", "--help", cwd=tmp_path)
    found = run(
        installed / "bin" / "python", "-c",
        "from tcupgan.training.cli import shipped_config; print(shipped_config('configs/demo.yaml'))",
        cwd=tmp_path,
    )  # fmt: skip
    assert Path(found.strip()).is_file() and Path(found.strip()).resolve().is_relative_to(installed.resolve())
    printed = run(
        installed / "bin" / "tcupgan", "fit", "--config", "fatchecker", "--print_config", cwd=tmp_path
    )
    assert "focal_tversky" in printed  # the shipped Fat Checker config, read from the wheel
    assert not list(tmp_path.iterdir())  # looking up configs wrote nothing into the user's folder
