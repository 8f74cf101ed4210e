"""The kernel tests here use the apply-engine tests' host: a fresh netns with a veth pair."""

from tests.engine.conftest import host  # noqa: F401
