"""Site-wide pieces that know no app: the lowest layer of the service.

Nothing in ``core`` imports another first-party package (tests/test_architecture.py
checks it), so every app may import ``core`` and ``core`` never needs them.
"""
