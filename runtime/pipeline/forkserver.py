"""Imported once by the fork server that `mlc train` starts (and by nothing else): it loads
torch and the worker code so each worker forks ready, and makes SIGINT ignored there.

The fork server restores, in every child it forks, the signal handlers it had after these
imports; ignoring SIGINT here means a Ctrl-C (sent to the whole terminal process group) never
raises KeyboardInterrupt in a half-started worker. The launcher alone handles Ctrl-C and stops
the workers itself, so a Ctrl-C ends with one line and no traceback from any process.
"""

import signal

import mlc.runtime.pipeline.worker  # noqa: F401  (preloaded: what every worker needs)

signal.signal(signal.SIGINT, signal.SIG_IGN)
