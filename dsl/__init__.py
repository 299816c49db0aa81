"""The flow language: flow files (YAML form and text form) -> Survey AST, checked."""
