"""Subcommands of ``packhouse`` beyond ``serve``. Each module exposes ``register(subparsers)``;
the handler is stored as ``func`` on the parsed namespace and returns an exit code."""
