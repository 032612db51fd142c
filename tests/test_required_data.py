"""The rule for tests that need the offline data: skip where it is absent, fail under
REPLAYMASK_REQUIRE_DATA=1 (CI), so that CI cannot pass by skipping them."""

import pytest

from . import conftest


def test_missing_data_skips_by_default_and_fails_where_it_is_required(monkeypatch):
    monkeypatch.setattr(conftest, "DATA_REQUIRED", False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        conftest.skip_unless_data(False, "X is not installed")
    monkeypatch.setattr(conftest, "DATA_REQUIRED", True)
    with pytest.raises(pytest.fail.Exception, match="REPLAYMASK_REQUIRE_DATA=1, but X is not"):
        conftest.skip_unless_data(False, "X is not installed")
    conftest.skip_unless_data(True, "X is not installed")  # present: the test runs
