"""Run parser-sensitive tests with both YAML back ends (libyaml and pure Python)."""

from __future__ import annotations

import pytest
import yaml

from mplexctl.config import yamlsrc


@pytest.fixture(params=["libyaml", "python"])
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "libyaml":
        if not getattr(yaml, "__with_libyaml__", False):
            pytest.skip("PyYAML built without libyaml")
        monkeypatch.setattr(yamlsrc, "_LOADER", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(yamlsrc, "_LOADER", yaml.SafeLoader)
    return str(request.param)
