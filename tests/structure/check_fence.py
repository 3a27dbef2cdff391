#!/usr/bin/env python3
"""Checks that the core stays behind its fence (ctest DispatcherStaysBehindItsFence): no
file in dispatcher/ includes the transport, the metrics, the binary's wiring, or a library
the core must not depend on (Beast, prometheus-cpp, yaml-cpp, cnats, libjwt, spdlog), and
the dispatcher library links nothing but Asio's headers, threads and moodycamel's queue.
The build adds a fence of its own: the core's include root holds only dispatcher/, so an
#include "transport/..." there does not compile (ctest CoreCannotIncludeTheTransport).

Usage: check_fence.py SOURCE_DIR LINK_FILE
  LINK_FILE: the dispatcher's link libraries, one line, as CMake's file(GENERATE) wrote them.
"""
import re
import sys
from pathlib import Path

FORBIDDEN = re.compile(r'#\s*include\s*[<"](transport/|metrics/|main/|boost/beast|prometheus/|'
                       r'yaml-cpp/|nats/|jwt\.h|spdlog/|openssl/)')
ALLOWED_LINKS = {"shardcast_options", "Boost::headers", "Threads::Threads", "concurrentqueue"}


def main():
    source, link_file = Path(sys.argv[1]), Path(sys.argv[2])
    problems = []
    files = sorted((source / "dispatcher").glob("*.[ch]pp"))
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if FORBIDDEN.search(line):
                problems.append(f"{path.relative_to(source)}:{number}: {line.strip()}")
    links = set()
    for entry in re.split(r"[;\s]+", link_file.read_text().strip()):
        # $<BUILD_INTERFACE:x> and $<LINK_ONLY:x> are x as far as the fence goes.
        entry = re.sub(r"^\$<\w+:(.*)>$", r"\1", entry)
        if entry:
            links.add(entry)
    for extra in sorted(links - ALLOWED_LINKS):
        problems.append(f"shardcast_dispatcher links {extra}; the core may link only "
                        f"{', '.join(sorted(ALLOWED_LINKS))}")
    if problems:
        print("the core left its fence:\n  " + "\n  ".join(problems))
        return 1
    print(f"{len(files)} files of dispatcher/ include nothing outside the core; it links "
          f"{', '.join(sorted(links))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
