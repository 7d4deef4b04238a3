"""The traps a new user of the pytest plugin fell into (issue 23), each run as that user would:
an inner project executed by pytester with the real plugin and the real fake."""

from __future__ import annotations

import pytest

from test_faults_pytest import outcomes, project
from test_pytest_plugin import SCENARIO, run, setup_project

pytest_plugins = ["pytester"]


def test_a_fault_variant_is_selected_with_k(pytester: pytest.Pytester) -> None:
    project(pytester, """
        import pytest
        from inner_client import session

        @pytest.mark.codex_cassette("session", faults="crash", faults_deadline=2)
        def test_client(fake_codex, codex_fault):
            try:
                session(fake_codex.argv)
            except (EOFError, OSError):
                assert codex_fault is not None
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA", "-k", "fault:crash-7:closed")
    assert outcomes(result) == {"test_client[fault:crash-7:closed]": "PASSED"}, result.stdout.str()
    result = pytester.runpytest("-p", "no:cacheprovider", "-rA", "-k", "fault:none or crash-2 and not closed")
    assert outcomes(result) == {"test_client[fault:none]": "PASSED", "test_client[fault:crash-2]": "PASSED"}
