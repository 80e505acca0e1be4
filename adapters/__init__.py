"""Supplier protocol adapters: pure translators between the gateway's charges and each wire protocol.

This package never imports the gateway, aiohttp, redis or structlog.
"""
