"""The backends the contract runs on (fixtures `<name>_store` in tests/conftest.py)."""

BACKENDS = ["memory", "local", "s3"]
