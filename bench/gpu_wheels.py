"""The wheels `make gpu-check` installs on a bare CUDA machine, and their download (what
`make gpu-wheels` runs: python -m bench.gpu_wheels [--dir DIR] [--list]).

The GPU machine has Python 3.12 and PyTorch with CUDA, numpy, scipy and pytest, but no
network: everything else the walk, the benchmark and the tests import travels with the
repository as wheels, built here. Which ones: the runtime requirements (requirements.txt)
and what they require in turn, as this virtualenv's installed metadata says, at the versions
installed here; less what the GPU machine has (GPU_MACHINE_HAS, and what those require);
plus requirements-nodeps.txt (spandrel) without what it declares, as it is installed here.
imageio-ffmpeg travels without its ffmpeg binary (172 MB; it would not fit in what a run
carries, 64 MiB in all): built from its source distribution, which has none. So the GPU
check makes every frame but encodes none, unless IMAGEIO_FFMPEG_EXE names an ffmpeg there.
"""

import argparse
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from bench.gpu_check import REPO_ROOT, WHEEL_DIR
# What the GPU machine has installed (with what each requires): not shipped.
GPU_MACHINE_HAS = ("torch", "numpy", "scipy", "pytest")
# The GPU machine's Python and platform, for markers and for pip download.
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# Built from the source distribution: a pure-Python wheel without the ffmpeg binary.
WITHOUT_BINARY = ("imageio-ffmpeg",)
# What a run may carry to the GPU machine in all (the repository included), and what the
# repository itself takes: the wheels must fit in the difference.
CARRY_LIMIT = 64 << 20
REPOSITORY_ALLOWANCE = 8 << 20


def canonical(name: str) -> str:
    """A distribution name as pip compares them: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def marker_environment() -> dict[str, str]:
    """The GPU machine's, for requirement markers (python_version, platform...)."""
    environment = default_environment()
    environment.update(python_version=PYTHON_VERSION, python_full_version=f"{PYTHON_VERSION}.0",
                       sys_platform="linux", platform_system="Linux", platform_machine="x86_64")
    return environment


def requirements_of(name: str) -> list[str]:
    """The distributions `name` requires on the GPU machine (no extras), from its metadata here."""
    environment = marker_environment()
    required = []
    for line in importlib.metadata.distribution(name).requires or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({**environment, "extra": ""}):
            required.append(canonical(requirement.name))
    return required


def closure(names) -> set[str]:
    """`names` and everything they require, recursively (canonical names)."""
    seen, pending = set(), [canonical(name) for name in names]
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending += requirements_of(name)
    return seen


def runtime_requirements(file_name: str = "requirements.txt") -> list[str]:
    """The distributions a requirements file of the repository names (canonical)."""
    lines = (REPO_ROOT / file_name).read_text().splitlines()
    return [canonical(Requirement(line).name) for line in lines if line.strip() and not line.startswith("#")]


def wheels() -> dict[str, str]:
    """{distribution: installed version} of every wheel the GPU machine needs, sorted."""
    shipped = closure(runtime_requirements()) - closure(GPU_MACHINE_HAS)
    shipped |= set(runtime_requirements("requirements-nodeps.txt"))
    return {name: importlib.metadata.version(name) for name in sorted(shipped)}


def download(name: str, version: str, directory: Path) -> None:
    """One wheel for the GPU machine into directory: the registry's for Python 3.12 on
    manylinux x86_64, or one built from the source distribution (WITHOUT_BINARY)."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    if name in WITHOUT_BINARY:
        command = [*pip, "wheel", "--quiet", "--no-deps", "--no-binary", name, "--wheel-dir", str(directory)]
    else:
        platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
        command = [
            *pip, "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", PYTHON_VERSION,
            "--implementation", "cp", *platforms, "--dest", str(directory),
        ]
    subprocess.run([*command, f"{name}=={version}"], check=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_wheels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=WHEEL_DIR, help="where the wheels go (default: gpu-wheels/)")
    parser.add_argument("--list", action="store_true", help="only print the distributions and versions")
    arguments = parser.parse_args(argv)
    wanted = wheels()
    if arguments.list:
        print("\n".join(f"{name}=={version}" for name, version in wanted.items()))
        return 0
    # A fresh folder each time, swapped in when complete: no wheel of an older list is left.
    arguments.dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=arguments.dir.parent, prefix=".gpu-wheels-") as building:
        for name, version in wanted.items():
            download(name, version, Path(building))
        total = sum(path.stat().st_size for path in Path(building).iterdir())
        if total > CARRY_LIMIT - REPOSITORY_ALLOWANCE:
            raise SystemExit(
                f"The wheels take {total / 2**20:.1f} MiB, more than the "
                f"{(CARRY_LIMIT - REPOSITORY_ALLOWANCE) / 2**20:.0f} MiB a run can carry beside the "
                f"repository: ship fewer (GPU_MACHINE_HAS in bench/gpu_wheels.py)."
            )
        if arguments.dir.exists():
            for old in arguments.dir.iterdir():
                old.unlink()
            arguments.dir.rmdir()
        Path(building).rename(arguments.dir)
        Path(building).mkdir()  # for TemporaryDirectory's clean-up
    print(f"{len(wanted)} wheels, {total / 2**20:.1f} MiB, in {arguments.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
