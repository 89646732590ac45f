"""Integrations with distributed engines (Ray); each needs its optional extra."""
