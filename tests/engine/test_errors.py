"""One wording of an error for every face: the CLI's two lines, the app's notification, a form field's key."""

from __future__ import annotations

import pytest

from engine.config import apply_overrides, load_toml, preset
from engine.errors import ConfigError, DataError, cli_lines, describe


def test_cli_and_app_wordings() -> None:
    err = DataError("no such corpus", hint="pass a file")
    assert cli_lines(err) == "error: no such corpus\nhint: pass a file"
    assert cli_lines(DataError("bad")) == "error: bad"
    assert cli_lines(err, "ENOENT") == "error: no such corpus: ENOENT\nhint: pass a file"
    assert describe(err) == "no such corpus\npass a file"
    assert describe(ValueError("x")) == "ValueError: x", "a bug keeps its class so it can be reported"


@pytest.mark.parametrize(("override", "key"), [
    ("model.num_layers=3", "model.num_layers"),  # a rule between fields
    ("optim.muon_lr=-1", "optim.muon_lr"),  # a number out of its range
    ("train.batch_size='many'", "train.batch_size"),  # a wrong type
    ("train.no_such_key=1", "train.no_such_key"),  # an unknown key
])
def test_config_errors_carry_their_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        apply_overrides(preset("shakespeare-cpu"), [override])
    assert caught.value.key == key


def test_a_config_file_error_names_its_key(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[train]\nnum_iterations = "ten"\n')
    with pytest.raises(ConfigError) as caught:
        load_toml(path)
    assert caught.value.key == "train.num_iterations" and str(path) in caught.value.message
