"""The server's runtime shells: the read-step-commit service, the flow registry, timers,
settings, metrics, exports, worker processes and the Twilio client. They do I/O; the
core in engine/ does not."""
