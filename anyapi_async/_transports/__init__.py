"""Transports: the declared contract (`base`) and the aiohttp adapter (`aiohttp`)."""
