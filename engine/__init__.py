"""The conversation engine. The package root (with questions/ and sms/) is the pure core:
compiled flows, steps, sessions, routing. It does no I/O and reads no clock. The shells
live in subpackages named for what they talk to: redis/, runtime/, tools/."""
