"""Running training: the shared fit/export runner, callbacks, optimisers, the refit on all data and validation."""
