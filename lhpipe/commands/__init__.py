"""The implementations of the `lhpipe` subcommands (lint, fmt, graph) and their output formats.

`lhpipe.cli` parses the command line and imports one of these modules lazily, so that a
`lhpipe lint` never pays for the engine's imports.
"""
