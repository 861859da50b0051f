"""fedarena's built-in plugins.

Each module here is registered with the plugin manager exactly as a
third-party plugin is: it implements the ``fedarena_register_*`` hooks and
calls ``registry.add(name, cls)``.
"""
