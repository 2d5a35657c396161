"""Every process on a SQLite file notices when the path no longer leads to the file it opened
(deleted, or replaced by another), and refuses to go on instead of writing where nobody will read:
before, `serve` answered 201 for orders it stored in a deleted file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from orchestrator.clock import utcnow
from orchestrator.config.settings import load_settings
from orchestrator.intake.importer import import_lines
from orchestrator.sandbox import Sandbox, SandboxConfig, SandboxOms, ServerThread
from orchestrator.store.errors import DatabaseError
from orchestrator.store.open import open_store
from tests.api_server import serve_api
from tests.factories import import_lines as lines_of
from tests.factories import import_record


def test_a_deleted_file_is_refused_and_not_created_again(tmp_path: Path) -> None:
    """A SQLite file deleted under a running process: its next write is refused with a clear error, and no
    empty database is made in its place."""
    path = tmp_path / "orders.db"
    store = open_store(f"sqlite:///{path}", create=True)
    import_lines(lines_of(2), store, utcnow())
    path.unlink()
    with pytest.raises(DatabaseError, match="was deleted or replaced while this process ran"):
        import_lines(lines_of(1, start=5), store, utcnow())
    with pytest.raises(DatabaseError):
        store.state_counts()
    assert not path.exists(), "no empty database made where the deleted one was"


def test_a_replaced_file_is_refused(tmp_path: Path) -> None:
    """A SQLite file replaced by another (another inode at the same path) is refused."""
    path = tmp_path / "orders.db"
    store = open_store(f"sqlite:///{path}", create=True)
    import_lines(lines_of(2), store, utcnow())
    shutil.copy(path, tmp_path / "copy.db")
    (tmp_path / "copy.db").replace(path)  # another file (another inode) at the same path
    with pytest.raises(DatabaseError, match="deleted or replaced"):
        store.state_counts()


def test_serve_answers_503_instead_of_storing_into_a_deleted_file(tmp_path: Path) -> None:
    """`serve` on a deleted SQLite file answers 503 instead of 201 for orders it could not keep."""
    sandbox = Sandbox(SandboxOms(SandboxConfig()))
    with ServerThread(sandbox) as vtex:
        settings = load_settings(
            None,
            database_url=f"sqlite:///{tmp_path / 'orders.db'}",
            vtex_base_url=vtex.url,
            vtex_app_key=sandbox.oms.config.app_key,
            vtex_app_token=sandbox.oms.config.app_token,
        )
        with serve_api(settings, sandbox) as served:
            assert served.call("POST", "/api/orders", "intake", json=import_record(1)).status_code == 201
            (tmp_path / "orders.db").unlink()
            pushed = served.call("POST", "/api/orders", "intake", content=json.dumps(import_record(2)))
            assert pushed.status_code == 503, pushed.text
            assert "was deleted or replaced" in pushed.json()["error"]
            assert served.call("GET", "/readyz", role=None).status_code == 503
            # the console too: one line saying why, not a bare 500 and a traceback in the log
            page = httpx.get(f"{served.url}/", cookies={"orchestrator_session": served.tokens["viewer"]})
            assert page.status_code == 503 and "was deleted or replaced" in page.text
