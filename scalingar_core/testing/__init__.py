"""Tiny random models for tests and benchmarks: a pure-PyTorch reference model, and LlamaGen and Janus-Pro
checkpoints written in their exact upstream layouts. Nothing here is used by a user-facing feature."""
