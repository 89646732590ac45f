"""Our own torch implementations of remote-code encoders (no `trust_remote_code`), traceable to ONNX.

Each module reads `config.json` and safetensors weights by name and reproduces the original forward pass;
`tests/exporter/test_golden.py` checks them against outputs of the original code.
"""
