"""URLs in the configuration: a scheme nothing here can reach is refused before anything is written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tfcheckpointer.config.loading import parse_checkpoint_section
from tfcheckpointer.errors import ConfigError


def test_a_scheme_no_backend_knows_is_one_config_error():
    with pytest.raises(
        ConfigError,
        match=r"directory: cannot use 'nosuch://bucket/run': neither TensorFlow nor fsspec knows "
        r"the URL scheme 'nosuch'.*HINT: use a local path, gs://, or s3:// "
        r"\(pip install 'tfcheckpointer\[s3\]'\)",
    ):
        parse_checkpoint_section({"directory": "nosuch://bucket/run", "every_n_steps": 1})


def test_s3_without_s3fs_says_which_extra_to_install():
    # A fresh process where s3fs cannot be imported, as in an installation without the extra.
    code = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from tfcheckpointer.config.loading import parse_checkpoint_section\n"
        "parse_checkpoint_section({'directory': 's3://bucket/run', 'every_n_steps': 1})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "directory: cannot use 's3://bucket/run': the s3:// backend is not installed" in last
    assert last.endswith("HINT: pip install 'tfcheckpointer[s3]'")


@pytest.mark.parametrize("path", ["runs/ckpt", "gs://bucket/ckpt", "ram://ckpt", "s3://bucket/ckpt"])
def test_paths_with_an_installed_backend_are_accepted(path):
    assert parse_checkpoint_section({"directory": path, "every_n_steps": 1}).directory == path


def test_a_url_holding_a_password_is_refused_without_echoing_it():
    # fsspec's ftp:// (and sftp://, http://) take `user:password@` from the URL; the path is in
    # every log line, sidecar and manifest, so the password would be too.
    with pytest.raises(ConfigError) as refused:
        parse_checkpoint_section({"directory": "ftp://ann:s3cret@127.0.0.1/run", "every_n_steps": 1})
    message = str(refused.value)
    assert "s3cret" not in message
    assert "directory: cannot use 'ftp://ann:***@127.0.0.1/run': it holds a password" in message
    assert "HINT: give the credentials the way the backend reads them" in message
