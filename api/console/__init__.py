"""The web console at `/console`: server-rendered pages over the same domain as `/v1`.

Kept import-free so `api.console.signin_token` can be used without Flask loaded.
"""
