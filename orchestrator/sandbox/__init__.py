"""A stateful simulator of the VTEX OMS endpoints this product calls, served over real HTTP.

It is part of the product: users rehearse their integration against it, the demo runs on it, and
every end-to-end test drives it. `SandboxOms` is the behaviour, `Sandbox` adds what VTEX's edge
does (credentials, rate limits) plus fault injection, `create_app` makes it an ASGI app.
"""

from orchestrator.sandbox.app import Sandbox
from orchestrator.sandbox.catalog import Catalog
from orchestrator.sandbox.faults import FaultConfig, Faults
from orchestrator.sandbox.oms import SandboxOms
from orchestrator.sandbox.records import SandboxConfig
from orchestrator.sandbox.routes import create_app
from orchestrator.sandbox.server import ServerThread

__all__ = [
    "Catalog",
    "FaultConfig",
    "Faults",
    "Sandbox",
    "SandboxConfig",
    "SandboxOms",
    "ServerThread",
    "create_app",
]
