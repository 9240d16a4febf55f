"""The Connect API edge: the httpx delivery client and the local sandbox server."""
