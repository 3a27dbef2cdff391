#!/usr/bin/env python3
"""Checks deploy/Dockerfile without a container engine. Python 3 standard library only.

    check_dockerfile.py                  the structure (ctest DockerfileIsConsistent)
    check_dockerfile.py --packages       every apt package exists in this machine's Debian
                                         lists (ctest DockerfilePackagesExist; exits 77, a
                                         skip, when apt has no lists yet)
    check_dockerfile.py --binary FILE    every shared library FILE links is installed by the
                                         runtime stage (ctest DockerfileInstallsEveryLibrary)

Structure: two stages on debian:bookworm-slim; apt installs without recommends and never the
unversioned libboost-dev; the build stage builds the shardcast target; every COPY source
exists and survives .dockerignore; the binary is copied from where CMake puts it; the runtime
stage runs as a non-root USER, has a HEALTHCHECK on /healthz, EXPOSEs 8080, stops with
SIGTERM and has an ENTRYPOINT. Exits 1 with one line per problem.
"""

import argparse
import fnmatch
import glob
import re
import subprocess
import sys
from pathlib import Path

from report import report

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy/Dockerfile"
# Libraries debian:bookworm-slim has already (apt itself needs them).
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}
SKIP = 77


def instructions(text):
    """(keyword, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"(?m)^\s*(\w+)\s+(.*)$", joined)]


def stages(text):
    result = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            result.append([])
        result[-1].append((keyword, args))
    return result


def apt_packages(stage):
    packages = []
    for keyword, args in stage:
        if keyword == "RUN":
            for install in re.findall(r"apt-get install ([^&;|]+)", args):
                packages += [word for word in install.split() if not word.startswith("-")]
    return packages


def ignored(path, patterns):
    parts = Path(path).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        bare = pattern[3:] if pattern.startswith("**/") else None
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            return True
        if bare and any(fnmatch.fnmatchcase(part, bare) for part in parts):
            return True
    return False


def check_structure(text):
    problems = []
    all_stages = stages(text)
    if len(all_stages) != 2:
        return [f"expected a build and a runtime stage, got {len(all_stages)} stages"]
    build, runtime = all_stages
    for stage in all_stages:
        base = stage[0][1].split()[0]
        if not base.startswith("debian:bookworm"):
            problems.append(f"FROM {base}: expected debian:bookworm or debian:bookworm-slim")
        for keyword, args in stage:
            if "apt-get install" in args and "--no-install-recommends" not in args:
                problems.append(f"{keyword} {args[:60]}...: apt-get install without "
                                "--no-install-recommends")
    if "libboost-dev" in apt_packages(build):
        problems.append("the build stage installs libboost-dev (1.74); use libboost*1.81-dev")
    if not any(k == "RUN" and re.search(r"--target\s+shardcast\b", a) for k, a in build):
        problems.append("the build stage does not build the shardcast target")

    patterns = []
    dockerignore = ROOT / ".dockerignore"
    if dockerignore.exists():
        patterns = [line.strip().rstrip("/") for line in dockerignore.read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
    for keyword, args in build + runtime:
        if keyword != "COPY" or "--from=" in args:
            continue
        for source in args.split()[:-1]:
            if not (ROOT / source).exists():
                problems.append(f"COPY {source}: no such file in the build context")
            elif source != "." and ignored(source, patterns):
                problems.append(f"COPY {source}: excluded by .dockerignore")

    workdir = next((a for k, a in build if k == "WORKDIR"), "/")
    copies = [m for k, a in runtime if k == "COPY" and (m := re.match(r"--from=\S+ (\S+) ", a))]
    if not copies:
        problems.append("the runtime stage copies nothing from the build stage")
    for match in copies:
        built = re.fullmatch(re.escape(workdir) + r"/build/release/(.+)/shardcast", match.group(1))
        cmake = ROOT / built.group(1) / "CMakeLists.txt" if built else None
        if not cmake or not cmake.exists() or "add_executable(shardcast " not in cmake.read_text():
            problems.append(f"COPY --from: {match.group(1)} is not where the release preset "
                            "builds the shardcast target")

    keywords = dict(runtime)
    user = keywords.get("USER", "root").split(":")[0]
    if user in ("root", "0"):
        problems.append("the runtime stage runs as root: add a USER")
    if "/healthz" not in keywords.get("HEALTHCHECK", ""):
        problems.append("the runtime stage has no HEALTHCHECK on /healthz")
    if "8080" not in keywords.get("EXPOSE", "").split():
        problems.append("the runtime stage does not EXPOSE 8080")
    if keywords.get("STOPSIGNAL") != "SIGTERM":
        problems.append("the runtime stage does not set STOPSIGNAL SIGTERM")
    if "ENTRYPOINT" not in keywords:
        problems.append("the runtime stage has no ENTRYPOINT")
    return problems


def check_packages(text):
    if not glob.glob("/var/lib/apt/lists/*_Packages*"):
        print("SKIPPED: apt has no package lists (run apt-get update)")
        sys.exit(SKIP)
    packages = sorted({p for stage in stages(text) for p in apt_packages(stage)})
    policy = subprocess.run(["apt-cache", "policy", *packages], capture_output=True,
                            text=True, check=True).stdout
    candidates = dict(re.findall(r"(?m)^(\S+):\n(?:.*\n)*?\s+Candidate: (\S+)", policy))
    return [f"apt package {p} has no candidate in this machine's Debian lists"
            for p in packages if candidates.get(p, "(none)") == "(none)"]


def owning_package(path):
    """dpkg records a file under the path its package ships it at; with merged /usr the
    library may be found under /lib while its package ships it in /usr/lib, or the reverse."""
    real = str(Path(path).resolve())
    for candidate in dict.fromkeys([path, real, re.sub(r"^/usr/", "/", real),
                                    re.sub(r"^/(?!usr/)", "/usr/", path)]):
        owner = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if owner.returncode == 0:
            return owner.stdout.split(":")[0]
    return None


def check_binary(text, binary):
    """Maps each DT_NEEDED library of the binary to its Debian package through ldd and dpkg."""
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]",
                        subprocess.run(["readelf", "-d", binary], capture_output=True,
                                       text=True, check=True).stdout)
    paths = dict(re.findall(r"(?m)^\s*(\S+) => (\S+)",
                            subprocess.run(["ldd", binary], capture_output=True, text=True,
                                           check=True).stdout))
    installed = set(apt_packages(stages(text)[-1])) | BASE_IMAGE_PACKAGES
    problems = []
    for library in needed:
        if library not in paths:
            problems.append(f"{library}: ldd does not resolve it")
            continue
        package = owning_package(paths[library])
        if package is None:
            problems.append(f"{library} ({paths[library]}): no Debian package owns it")
        elif package not in installed:
            problems.append(f"{library}: package {package} is not installed by the runtime stage")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--packages", action="store_true")
    mode.add_argument("--binary", metavar="FILE")
    args = parser.parse_args()
    text = DOCKERFILE.read_text()
    if args.packages:
        problems = check_packages(text)
    elif args.binary:
        problems = check_binary(text, args.binary)
    else:
        problems = check_structure(text)
    report(problems, f"{DOCKERFILE}: OK")


if __name__ == "__main__":
    main()
