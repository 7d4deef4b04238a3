"""Running the real codex binary offline: a scripted mock of the model API on
loopback, a throwaway CODEX_HOME pointing at it, and binary discovery.
See docs/live.md."""

from harness.live.binary import CodexBinaryError, codex_version, find_codex_binary, parse_codex_version
from harness.live.codex_home import (
    APPROVAL_POLICIES,
    DEFAULT_MODEL,
    SANDBOX_MODES,
    CodexHome,
    CodexHomeError,
    ProviderCheckError,
    check_mock_provider,
    make_codex_home,
    render_config,
)
from harness.live.mock_model import MockModel, MockModelError, MockModelThread, RecordedRequest
from harness.live.model_script import (
    FailStep,
    GateStep,
    PatchStep,
    ShellStep,
    Step,
    TextStep,
    add_file_patch,
    load_model_script,
    load_model_script_file,
)

__all__ = [
    "CodexBinaryError", "codex_version", "find_codex_binary", "parse_codex_version",
    "APPROVAL_POLICIES", "SANDBOX_MODES", "DEFAULT_MODEL", "CodexHome", "CodexHomeError", "ProviderCheckError", "check_mock_provider", "make_codex_home", "render_config",
    "MockModel", "MockModelError", "MockModelThread", "RecordedRequest",
    "Step", "TextStep", "ShellStep", "PatchStep", "GateStep", "FailStep",
    "add_file_patch", "load_model_script", "load_model_script_file",
]
