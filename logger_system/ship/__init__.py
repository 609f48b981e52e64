"""Shipping off the host: the wire protocols, spelled out sans-IO, and the clients that speak them."""
