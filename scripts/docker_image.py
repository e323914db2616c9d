"""Builds the uniform image on a machine where no image can be pulled (`make docker-image`):

1. a Docker engine: started here (`dockerd`) when none answers, after installing Debian's
   docker.io when there is no dockerd at all;
2. the base image `mlaas-base:bookworm`: Debian bookworm with python3-venv, made with debootstrap
   into build/rootfs and `docker import`ed (once; kept by the engine);
3. build/wheels: the project and its dependencies as wheels, from the host's pip;
4. `docker build --build-arg BASE_IMAGE=mlaas-base:bookworm -t mlaas:local .`.

Prints the image tag. Where images can be pulled, `docker build -t mlaas .` alone is enough.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
BASE = "mlaas-base:bookworm"
IMAGE = "mlaas:local"
MIRROR = "http://deb.debian.org/debian"


def run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, check=True, **kwargs)


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def ensure_engine() -> None:
    if shutil.which("docker") and engine_answers():
        return
    if not shutil.which("dockerd"):
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", "docker.io", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    BUILD.mkdir(exist_ok=True)
    log = (BUILD / "dockerd.log").open("ab")
    subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not engine_answers():
        if time.monotonic() > deadline:
            sys.exit(f"dockerd did not start; see {BUILD / 'dockerd.log'}")
        time.sleep(0.5)


def ensure_base() -> None:
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True).returncode == 0:
        return
    rootfs = BUILD / "rootfs"
    if not (rootfs / "usr/bin/python3").exists():
        if not shutil.which("debootstrap"):
            run("apt-get", "install", "-y", "-qq", "debootstrap")
        shutil.rmtree(rootfs, ignore_errors=True)
        run("debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates,passwd",
            "bookworm", str(rootfs), MIRROR)  # fmt: skip
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    run("docker", "import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "-", BASE, stdin=tar.stdout)  # fmt: skip
    tar.wait()


def build_wheels() -> None:
    wheels = BUILD / "wheels"
    for old in wheels.glob("mlaas_mesh-*.whl"):  # the project itself is always rebuilt
        old.unlink()
    # Markers resolve for this interpreter; Debian's python3 is 3.11.2, for which redis also
    # wants async-timeout (the host's newer 3.11 does not).
    run(sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), str(ROOT), "async-timeout>=4.0.3")


def main() -> None:
    ensure_engine()
    ensure_base()
    build_wheels()
    run("docker", "build", "-q", "--build-arg", f"BASE_IMAGE={BASE}", "-t", IMAGE, str(ROOT))
    print(IMAGE)


if __name__ == "__main__":
    main()
