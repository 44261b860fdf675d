"""Integrations: one package per platform the relay delivers to.

Each package holds everything the relay knows about its platform: the destination's
config model (`config.py`), its documented limits, the renderer (`render.py`), the sender
with its pure request builder (`send.py`), the one classifier of its answers
(`classify.py`) and the `relay doctor` probe (`doctor.py`). Its `__init__.py` exposes the
`Integration` entry that relay/destinations.py lists; the rest of the relay sees only that
(relay/integrations/base.py).
"""
