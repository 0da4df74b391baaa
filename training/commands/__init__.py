"""The ``matchms-neims train|evaluate|split|ensemble|benchmark-memory`` commands (entry points of the plugin CLI)."""
