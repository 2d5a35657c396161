"""Which proxy the environment sets for VTEX's URL: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY and
NO_PROXY (either case), read the way curl and Python's urllib read them.

The default transport (aiohttp's) speaks to VTEX directly; when a proxy applies, the client hands
its requests to httpx's own transport, which tunnels HTTPS through the proxy (CONNECT). SOCKS
proxies would need an extra package and are refused with a clear message.
"""

from __future__ import annotations

import urllib.request
from urllib.parse import unquote, urlsplit

from orchestrator.errors import UsageError
from orchestrator.redaction import register_secret


class ProxyError(UsageError, ValueError):
    """The proxy the environment names cannot be used."""


def proxy_for(url: str) -> str | None:
    """The proxy URL for requests to `url`, or None to connect directly."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    host = parts.hostname or ""
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed
    if not proxies or bypass(host, proxies):
        return None
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy:
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"  # curl's reading of a bare host:port
    scheme = urlsplit(proxy).scheme
    if scheme not in ("http", "https"):
        raise ProxyError(
            f"the proxy for {parts.scheme}:// is {scheme}://, which is not supported (use http://)"
        )
    password = urlsplit(proxy).password
    if password:
        register_secret(unquote(password))
    return proxy
