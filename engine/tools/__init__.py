"""The terminal tools: the `canvass` command line, the simulator and its player, the
conversation-test runner, the phone client and the development server."""
