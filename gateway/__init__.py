"""The supplier gateway: shop API, order lifecycle, routing, supplier I/O and operations."""
