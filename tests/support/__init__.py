"""Shared helpers of the fault, bad-input, security and fuzz tests (tests/integration/test_*).

``servers``: throw-away copies of PostgreSQL, Redis and an S3 (moto) server on loopback ports
that a test may stop and start at will; ``stack``: a worker process, an API on a real HTTP
server, and the checks every fault test ends with.
"""
