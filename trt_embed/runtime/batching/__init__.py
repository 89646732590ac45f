"""Prepared inputs to engine calls: the bounded priority queue and its scheduler, token blocks, padding or
packing into an engine batch, and the engine pool that runs a batch through its route."""
