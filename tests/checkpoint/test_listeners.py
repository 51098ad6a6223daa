"""The listener dispatcher: every listener told in order, a failing one logged by name and skipped."""

from __future__ import annotations

import logging

import pytest

from tfcheckpointer.checkpoint.listeners import (
    CheckpointListener,
    Listeners,
    NamedListener,
    configured_listeners,
    given_listeners,
)
from tfcheckpointer.config.schema import FactoryConfig
from tfcheckpointer.errors import ConfigError


class Recorder(CheckpointListener):
    def __init__(self):
        self.calls = []

    def after_save(self, step, path):  # named as the user likes: arguments are positional
        self.calls.append(("after_save", step, path))

    def after_freeze(self, path, sidecar):
        self.calls.append(("after_freeze", path, sidecar))


class Broken:
    def after_save(self, step, prefix):
        raise OSError("bucket unreachable\nsecond line")


class Interrupting:
    def after_save(self, step, prefix):
        raise KeyboardInterrupt


def test_every_listener_is_told_in_order_with_positional_arguments():
    first, second = Recorder(), Recorder()
    listeners = given_listeners([first, second])
    listeners.after_save(5, "ckpt/model.ckpt-5")
    listeners.after_freeze("m.pb", "m.pb.json")
    expected = [("after_save", 5, "ckpt/model.ckpt-5"), ("after_freeze", "m.pb", "m.pb.json")]
    assert first.calls == second.calls == expected


def test_a_raising_listener_is_logged_by_name_and_the_next_one_is_still_told(caplog):
    after = Recorder()
    listeners = given_listeners([Broken(), after])
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        listeners.after_save(5, "ckpt/model.ckpt-5")
    assert caplog.messages == [
        "Listener Broken failed in after_save(5, 'ckpt/model.ckpt-5'): OSError: bucket "
        "unreachable -- the checkpoint stays."
    ]
    assert after.calls == [("after_save", 5, "ckpt/model.ckpt-5")]


def test_a_listener_without_the_event_is_skipped():
    listeners = given_listeners([Broken()])
    listeners.after_freeze("m.pb", "m.pb.json")  # Broken has no after_freeze: nothing happens


def test_keyboard_interrupt_passes_through_a_listener():
    with pytest.raises(KeyboardInterrupt):
        given_listeners([Interrupting(), Recorder()]).after_save(1, "p")


def test_the_base_class_is_a_listener_that_does_nothing():
    Listeners([NamedListener("base", CheckpointListener())]).after_export(1, "exports/1", True)


@pytest.mark.parametrize(
    "value, key, message",
    [
        (Recorder(), "listeners", r"expected a list of listeners, got <.*> \(Recorder\) "
         r"HINT: pass a list: listeners=\[...\]"),
        ([Recorder], r"listeners\[0\]", r"got the class Recorder HINT: pass an instance: Recorder\(\)"),
        ([Recorder(), print], r"listeners\[1\]", "expected a listener: an object with after_save, "
         r"after_freeze or after_export, got <built-in function print> \(builtin_function_or_method\)"),
    ],
)
def test_given_listeners_are_checked(value, key, message):
    with pytest.raises(ConfigError, match=rf"^<arguments>: {key}: .*{message}"):
        given_listeners(value)


def _factory(reference, **kwargs):
    return FactoryConfig(reference, kwargs)


def test_configured_listeners_are_built_by_their_factory_and_named_by_the_reference(caplog):
    listeners = configured_listeners(
        [_factory("tests.checkpoint.test_listeners:Broken")], source="job.yaml"
    )
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        listeners.after_save(2, "p-2")
    assert caplog.messages[0].startswith(
        "Listener tests.checkpoint.test_listeners:Broken failed in after_save(2, 'p-2')"
    )


def _raise(**kwargs):
    raise RuntimeError("no token\nTraceback...")


@pytest.mark.parametrize(
    "factory, message",
    [
        (_factory("tests.checkpoint.test_listeners:Nothing"),
         "listeners[0].factory: module 'tests.checkpoint.test_listeners' has no attribute 'Nothing'"),
        (_factory("tests.checkpoint.test_listeners:_raise"),
         "listeners[0].factory: the factory 'tests.checkpoint.test_listeners:_raise' "
         "raised RuntimeError: no token HINT: it is called"),
        (_factory("tests.checkpoint.test_listeners:Recorder", units=3),
         "listeners[0].factory: the factory 'tests.checkpoint.test_listeners:Recorder' "
         "raised TypeError: Recorder.__init__() got an unexpected keyword argument 'units'"),
        (_factory("builtins:dict", a=1),
         "listeners[0].factory: expected a listener: an object with after_save, after_freeze or "
         "after_export, got {'a': 1} (dict)"),
    ],
)
def test_a_bad_configured_listener_is_one_config_error(factory, message):
    with pytest.raises(ConfigError) as caught:
        configured_listeners([factory], source="job.yaml")
    assert str(caught.value).startswith(f"job.yaml: {message}")
