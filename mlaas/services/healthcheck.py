"""`python -m mlaas.services.healthcheck HOST:PORT`: exit 0 when the gRPC server there reports SERVING
(the container image's health check, and the Kubernetes probes of a mesh over TLS, which the
kubelet's native gRPC probe cannot speak). TLS as MLAAS_TLS_CA, MLAAS_TLS_CLIENT_CERT and
MLAAS_TLS_CLIENT_KEY say."""

from __future__ import annotations

import sys

from mlaas.services.net import health


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mlaas.services.healthcheck HOST:PORT", file=sys.stderr)
        return 2
    answer = health(args[0], timeout=2.0)
    print(answer)
    return 0 if answer == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
