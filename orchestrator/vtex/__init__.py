"""Talking to VTEX: the client and its one error tree, what counts as VTEX's answer, the transport,
the request budget and the account's pauses, order ids, and proxies."""
