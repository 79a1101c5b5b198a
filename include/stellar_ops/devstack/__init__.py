"""The local stack of real servers used by `make run`, `make stack` and the tests."""
