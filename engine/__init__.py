"""The conversation engine: compiled flows, pure steps, sessions, and the shells' helpers."""
