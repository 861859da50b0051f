"""The plugin system: hookspecs, plugin kinds and their interfaces, parameters, the registry."""
