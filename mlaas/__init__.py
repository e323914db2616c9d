"""MLaaS mesh: what every service and every application shares.

The generated stubs live in `mlaas.v1` (mesh services) and `mlaas.oip` (Open Inference
Protocol). `mlaas.oip` is imported only on demand: it defines the `inference.*` protobuf
symbols, which tritonclient, KServe and MLServer define too, and one process cannot register
them twice.
"""

__version__ = "0.2.0"
