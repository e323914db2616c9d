"""A fork server for tests/mlaas/test_fork_server.py (`python -m tests.mlaas.fork_child`): nothing
to warm, and a child that says what it got and then exits with the code its arguments give
(`exit N`), sleeps until a signal ends it (`wait`), raises (`raise`), or calls sys.exit with
nothing or a message (`sys.exit [MESSAGE]`)."""

from __future__ import annotations

import json
import os
import sys
import time

from mlaas.services import fork_server


def run_child(argv: list[str]) -> int:
    open_files = sorted(map(int, os.listdir("/proc/self/fd")))
    print(json.dumps({"env": dict(os.environ), "sid": os.getsid(0), "open": open_files}))
    sys.stdout.flush()
    if argv[0] == "wait":
        time.sleep(600)
    if argv[0] == "sys.exit":
        sys.exit(*argv[1:])
    if argv[0] == "raise":
        raise RuntimeError("the child failed")
    return int(argv[1])


if __name__ == "__main__":
    sys.exit(fork_server.run(lambda: None, run_child, "test server", "tests.mlaas.fork_child"))
