"""The Redis shell: the only package that knows Canvass's Redis keys and scripts
(store), and the pipelined connection the scripts run over (multiplexer)."""
