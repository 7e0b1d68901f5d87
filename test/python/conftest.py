"""Shared fixtures: where the built tools are."""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def quant_opt():
    build = pathlib.Path(os.environ.get("QLR_BUILD_DIR", ROOT / "build"))
    tool = build / "bin" / "quant-opt"
    if not tool.exists():
        pytest.skip(f"quant-opt is not built at {tool} (run scripts/test.sh)")
    return str(tool)
