"""Where the mesh's services listen unless told otherwise, written once: each service's default
port, the addresses clients, the CLI and the other services use by default, and the variables
that name them instead (MLAAS_REGISTRY_ADDR, MLAAS_SCHEDULER_ADDR, MLAAS_MONITOR_ADDR)."""

REGISTRY_PORT = 50051
SCHEDULER_PORT = 50052
MONITOR_PORT = 50053
# The scheduler's activator (scheduler_svc/activator.py).
ACTIVATOR_PORT = 50054
ACTIVATOR_HTTP_PORT = 50055

REGISTRY = f"127.0.0.1:{REGISTRY_PORT}"
SCHEDULER = f"127.0.0.1:{SCHEDULER_PORT}"
MONITOR = f"127.0.0.1:{MONITOR_PORT}"
