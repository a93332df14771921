"""A setting vecdb does not know (a misspelt section or key, in the --config file or a VECDB_
variable) is named in a warning, with the nearest known name, instead of silently leaving the default."""

from __future__ import annotations

import logging

import pytest

from vecdb.config import SettingError, load_settings


def test_unknown_sections_and_keys_are_warned_with_the_nearest_name(tmp_path, caplog):
    cfg = tmp_path / "vecdb.yaml"
    cfg.write_text("querynode:\n  index_thread: 3\nproxi:\n  port: 1\nstorage:\n  data_dir: /tmp/x\n")
    with caplog.at_level(logging.WARNING, logger="vecdb.config"):
        settings = load_settings(str(cfg), env={"VECDB_COMPACTION__ENABLEDD": "true", "VECDB_GC__INTERVAL": "5"})
    warned = [r.getMessage() for r in caplog.records]
    assert any("querynode.index_thread (did you mean querynode.index_threads?)" in m for m in warned), warned
    assert any("unknown setting proxi (did you mean proxy?)" in m for m in warned), warned
    assert any("compaction.enabledd (did you mean compaction.enabled?)" in m for m in warned), warned
    assert len(warned) == 3, warned  # the known ones (storage.data_dir, gc.interval) are not named
    assert settings.storage.data_dir == "/tmp/x"


def test_known_settings_warn_nothing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="vecdb.config"):
        load_settings(None, env={"VECDB_STORAGE__DATA_DIR": "/tmp/y", "PATH": "/bin"})
    assert caplog.records == []


def test_a_section_with_every_key_commented_out_is_its_defaults(tmp_path):
    """``proxy:`` whose keys are all commented out is YAML's null: the section's defaults, not a refusal
    ("proxy: Input should be a valid dictionary"), and a VECDB_ variable of that section still applies
    (it raised a TypeError traceback at start)."""
    cfg = tmp_path / "vecdb.yaml"
    cfg.write_text("proxy:\n  # port: 19531\nhttp:\n  port: 9095\n")
    settings = load_settings(str(cfg), env={})
    assert (settings.proxy.port, settings.http.port) == (19530, 9095)
    settings = load_settings(str(cfg), env={"VECDB_PROXY__PORT": "19540"})
    assert settings.proxy.port == 19540


def test_a_section_that_is_no_mapping_is_named_with_a_variable_of_it_set(tmp_path):
    cfg = tmp_path / "vecdb.yaml"
    cfg.write_text("proxy: 5\n")
    with pytest.raises(SettingError, match=r"proxy: Input should be a valid dictionary"):
        load_settings(str(cfg), env={"VECDB_PROXY__PORT": "19540"})
