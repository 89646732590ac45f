"""Model code the exporter needs beyond plain transformers classes (decoder LLM embedders)."""
