"""Small file operations shared by the writers, on any filesystem `tf.io.gfile` knows."""

from __future__ import annotations

import tensorflow as tf

from tfcheckpointer import naming


def atomic_write(path: str, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`.

    Readers see the old file or the whole new one, never a part. On failure
    the temporary file is removed and `path` is untouched.
    """
    temp = path + naming.TEMP_INFIX
    try:
        with tf.io.gfile.GFile(temp, "wb") as f:
            f.write(data)
        tf.io.gfile.rename(temp, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(temp):
            tf.io.gfile.remove(temp)
        raise
