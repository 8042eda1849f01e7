"""The ``wheelmeld`` subcommands: one module each, each with ``register(subparsers)``.

A module's ``register`` adds its parser and sets ``run`` (``args -> exit code``) as its default;
``proxy.cli`` wires them together and maps ``ConfigError`` to exit status 2.
"""
