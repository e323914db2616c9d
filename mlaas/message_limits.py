"""How large one gRPC message may be, shared by the servers and the SDK."""

MAX_MESSAGE_BYTES = 64 * 2**20
# With a bulk port, a runtime's other ports take requests up to this size and the SDK sends
# larger ones to the bulk port (inference_svc/server.py). gRPC's own default message limit.
BULK_THRESHOLD_BYTES = 4 * 2**20
