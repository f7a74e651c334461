"""Moved to forkhooks._procnet (the demo uses it too); kept so existing imports work."""

from forkhooks._procnet import server_sockets

__all__ = ["server_sockets"]
