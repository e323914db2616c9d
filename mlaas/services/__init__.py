"""What the mesh's services share on the server side: settings, the gRPC server and its
interceptors, authentication and the permission table, error mapping, paging, ports and CPU
limits, and the programs the scheduler starts besides runtimes (a training job, a container's
health check). Applications never need it: the SDK (`mlaas.client`, `mlaas.inference_client`)
imports nothing from here."""
