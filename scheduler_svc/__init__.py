"""The Scheduler: deployment queue, placement, backends, leases, cache and rollouts
(mlaas.v1.SchedulerService). This far: placement."""
