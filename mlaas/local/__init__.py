"""Running the whole mesh on one machine (`mlaas up`): the supervisor of its processes, the
embedded Redis, and development certificates."""
