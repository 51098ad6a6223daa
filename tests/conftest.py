"""Shared fixtures: quiet TensorFlow and the tiniest models that show each behaviour."""

from __future__ import annotations

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

from tests.helpers import mlp, rows


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    """64 rows of 4 features and a scalar target."""
    return rows()


@pytest.fixture
def make_mlp():
    return mlp


@pytest.fixture
def policy(request):
    """Keras's global dtype policy set to the parametrized value for one test, then float32 again.

    Use with `@pytest.mark.parametrize("policy", [...], indirect=True)`.
    """
    import keras

    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(autouse=True)
def _restore_package_logger():
    """Put the `tfcheckpointer` logger back as it was after each test.

    In-process `main(["train", ...])` calls lower its level to INFO and add a
    stderr handler; a later test that counts warnings (caplog) would then see
    the INFO records too, so the outcome would depend on the order of tests.
    """
    logger = logging.getLogger("tfcheckpointer")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto) on 127.0.0.1 for the session, and the environment
    boto reads (`AWS_ENDPOINT_URL`, dummy keys) pointing at it; always stopped. Yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {
                "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
            }.items():
                patch.setenv(name, value)
            yield endpoint
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server, request) -> str:
    """A new, empty bucket on `s3_server` for one test; its `s3://` URL."""
    import boto3

    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip("-")
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"
