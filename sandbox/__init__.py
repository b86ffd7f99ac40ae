"""Vendor emulators on loopback: Ark, KIE, CometAPI, AceData and Vtrix, each in its own protocol.

The sandbox is a stand-in for the internet. It never imports `editqueue`; it only
speaks HTTP, so the service cannot tell it from the real vendors except by URL.
"""

from sandbox.app import create_app, serve

__all__ = ["create_app", "serve"]
