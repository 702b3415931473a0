"""The tests exercise the installed package (``pip install ./python``), not the source tree,
when run by scripts/python-tests.sh (NETPROTO_TEST_INSTALLED=1), and the package loads the
library it was told to.

Trust boundary: none.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import netproto

from conftest import ROOT


@pytest.mark.skipif(not os.environ.get("NETPROTO_TEST_INSTALLED"), reason="not run by python-tests.sh")
def test_the_installed_package_is_tested() -> None:
    where = Path(netproto.__file__).resolve()
    assert ROOT / "python" not in where.parents, where
    assert "site-packages" in where.parts
    assert (where.parent / "py.typed").is_file()


def test_the_library_is_the_one_named() -> None:
    assert netproto.library_version()
    assert netproto._lib.lib()._name == os.environ["NETPROTO_LIBRARY"]


def test_a_missing_library_is_a_clear_import_error(tmp_path) -> None:
    import subprocess
    import sys

    code = "import netproto\ntry:\n    netproto.library_version()\nexcept ImportError as e:\n    print(type(e).__name__, e)\n"
    env = {**os.environ, "NETPROTO_LIBRARY": str(tmp_path / "nope.so")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.startswith("LibraryNotFound"), out.stdout + out.stderr
    assert "NETPROTO_LIBRARY" in out.stdout and "nope.so" in out.stdout
    env.pop("NETPROTO_LIBRARY")
    env["LD_LIBRARY_PATH"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    # Either the installed libnetproto.so.1 is found, or the error names both ways.
    if out.stdout:
        assert "NETPROTO_LIBRARY" in out.stdout and "libnetproto.so.1" in out.stdout, out.stdout
