"""Our own torch implementations the exporter needs beyond plain transformers classes: remote-code
encoders (no `trust_remote_code`; checked against the original code in tests/exporter/test_golden.py) and
the decoder-LLM embedder wrapper."""
