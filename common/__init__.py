"""Low-level helpers both the gateway (``bot``, ``channels``) and the reference core (``core``)
use: engine creation, Alembic runs, PII masking, logging setup, the UTC clock, money rounding.

This package imports neither side, so the core stays a service of its own that a real
marketing system can replace without the gateway's code coming along.
"""
