"""Pure: the bucket objects and their codec, versions, keys, reconcile, config parsing,
errors. Standard library and msgspec only; no IO, no clock (tests/test_layers.py)."""
