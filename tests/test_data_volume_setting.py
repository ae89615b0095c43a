"""The data_volume setting that restore and upgrade switch: optional, round-trips through
chromactl.yaml, names the volume, and changes the container's configuration hash."""

from dataclasses import replace

import pytest

from chromactl.errors import ChromactlError
from chromactl.settings import parse_settings_file, render_settings_file, resolve_settings
from chromactl.spec import build_spec, volume_name


def settings(**given):
    return resolve_settings(given, None, folder_name="proj")


def test_default_volume_is_not_written():
    s = settings()
    assert s.data_volume is None and volume_name(s) == "chromactl-proj-data"
    assert "data_volume" not in render_settings_file(s)


def test_a_chosen_volume_round_trips_and_changes_the_hash():
    s = settings(data_volume="chromactl-proj-data-20261130T010000-ab12")
    parsed = parse_settings_file(render_settings_file(s))
    assert parsed["data_volume"] == s.data_volume and volume_name(s) == s.data_volume
    spec = build_spec("/p", s, {}, {}, "sha256:x", "/data")
    default = build_spec("/p", replace(s, data_volume=None), {}, {}, "sha256:x", "/data")
    assert spec.volume == s.data_volume and spec.config_hash != default.config_hash


def test_an_invalid_volume_name_is_refused():
    with pytest.raises(ChromactlError, match="invalid volume name"):
        settings(data_volume="../etc")
