"""Benchmarks of anyapi_async against the official openai SDK and a hand-written aiohttp floor.

``python -m benchmarks`` runs everything; see ``benchmarks/README.md``. Nothing here is
imported by the library or its tests.
"""
