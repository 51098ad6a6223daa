"""Which paths are URLs, which file layer reaches each, and whether it is installed.

TensorFlow's own file layer (`tf.io.gfile`) reaches local paths and the
schemes in `TENSORFLOW_SCHEMES`; every other URL (`s3://`, ...) goes
through `fsspec` and the implementation it registers for the scheme
(`s3fs` for `s3://`). This module imports neither TensorFlow nor fsspec's
backends until a URL needs one, so `tfcheckpointer validate` stays quick.
"""

from __future__ import annotations

import importlib
import urllib.parse

# `tf.io.gfile.get_registered_schemes()` of TensorFlow 2.21 ("" is a local path);
# tests/checkpoint/test_storage.py checks it against the installed TensorFlow.
TENSORFLOW_SCHEMES = frozenset({"", "file", "gs", "ram"})

# The extra that installs each fsspec backend, for the hint when it is missing.
_EXTRAS = {"s3": "s3", "s3a": "s3"}


def scheme(path: str) -> str:
    """The URL scheme of `path` (`s3` for `s3://b/k`), or "" for a local path."""
    head, sep, _ = path.partition("://")
    return head.lower() if sep else ""


def is_url(path: str) -> bool:
    return scheme(path) != ""


def uses_fsspec(path: str) -> bool:
    """Whether `path` is reached through fsspec rather than TensorFlow's file layer."""
    return scheme(path) not in TENSORFLOW_SCHEMES


def masked_password(path: str) -> str | None:
    """`path` with the password of its `user:password@` masked, or None when it holds none."""
    if not is_url(path):
        return None
    password = urllib.parse.urlsplit(path).password
    return None if password is None else path.replace(f":{password}@", ":***@", 1)


def backend_problem(path: str) -> tuple[str, str] | None:
    """Why `path` cannot be reached here, and a hint; None when it can.

    Only URLs that go through fsspec can fail: fsspec itself, or the
    package that implements the scheme (s3fs), may be missing, or no
    package implements it at all.
    """
    if not uses_fsspec(path):
        return None
    name = scheme(path)
    extra = _EXTRAS.get(name)
    install = f"pip install 'tfcheckpointer[{extra}]'" if extra else None
    try:
        fsspec = importlib.import_module("fsspec")
    except ImportError:
        return (
            f"{name}:// URLs go through fsspec, which is not installed",
            install or "pip install fsspec and the package that implements " + f"{name}://",
        )
    try:
        fsspec.get_filesystem_class(name)
    except ImportError as error:
        return (
            f"the {name}:// backend is not installed ({error})".replace("\n", " "),
            install or f"install the package fsspec names for {name}://",
        )
    except ValueError:
        return (
            f"neither TensorFlow nor fsspec knows the URL scheme {name!r}",
            "use a local path, gs://, or s3:// (pip install 'tfcheckpointer[s3]')",
        )
    return None
