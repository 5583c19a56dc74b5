"""A test whose precondition is missing on this machine: skipped on a workstation, failed in CI.

A security test that skips where CI runs proves nothing there, so under CI (the variable `CI` set to
anything but "", "0" or "false", as CI services set it) a missing precondition fails the test.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def missing(message: str) -> NoReturn:
    """Skip the test for `message`, or fail it under CI."""
    if in_ci():
        pytest.fail(f"precondition missing under CI: {message}", pytrace=False)
    pytest.skip(message)
