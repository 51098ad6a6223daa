"""The TF1 SessionRunHook: same config, same manager, same artifacts, in graph mode."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import steps_on_disk
from tfcheckpointer.cli import main
from tfcheckpointer.errors import CheckpointError, ConfigError, FreezeError
from tfcheckpointer.graph.files import read_graph_def, read_meta_graph_def
from tfcheckpointer.graph.inspection import inspect_graph_file
from tfcheckpointer.integrations.session_hook import CheckpointSessionHook

X = np.random.default_rng(0).standard_normal((16, 3)).astype("float32")
Y = X.sum(axis=1, keepdims=True)


def build_graph(*, count_steps: bool = True):
    """A TF1 linear model trained with Adam; returns (graph, train_op, inputs, targets, prediction).

    `count_steps=False` builds the train op without `global_step=`, as is easy to forget.
    """
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(0)
        global_step = tf.compat.v1.train.get_or_create_global_step()
        inputs = tf.compat.v1.placeholder(tf.float32, [None, 3], name="inputs/X")
        targets = tf.compat.v1.placeholder(tf.float32, [None, 1], name="targets")
        with tf.compat.v1.variable_scope("dense"):
            kernel = tf.compat.v1.get_variable("kernel", [3, 1])
            bias = tf.compat.v1.get_variable("bias", [1], initializer=tf.compat.v1.zeros_initializer())
        prediction = tf.identity(tf.matmul(inputs, kernel) + bias, name="output/predict")
        loss = tf.reduce_mean(tf.square(prediction - targets))
        train_op = tf.compat.v1.train.AdamOptimizer(0.05).minimize(
            loss, global_step=global_step if count_steps else None
        )
    return graph, train_op, inputs, targets, prediction


def train(directory, steps: int, **options):
    graph, train_op, inputs, targets, prediction = build_graph()
    hook = CheckpointSessionHook(directory=str(directory), **options)
    with graph.as_default():
        stop = tf.compat.v1.train.StopAtStepHook(last_step=steps)
        with tf.compat.v1.train.MonitoredTrainingSession(hooks=[hook, stop]) as session:
            while not session.should_stop():
                session.run(train_op, {inputs: X, targets: Y})
    return hook



def test_monitored_training_session_saves_every_n_steps_with_tf1_names(tmp_path):
    train(tmp_path, 10, every_n_steps=3, max_to_keep=None)
    assert steps_on_disk(tmp_path) == [3, 6, 9, 10]
    prefix = tf.train.latest_checkpoint(str(tmp_path))
    assert prefix == str(tmp_path / "model.ckpt-10")
    keys = dict(tf.train.list_variables(prefix))
    assert {"dense/kernel", "dense/bias", "global_step", "dense/kernel/Adam", "dense/kernel/Adam_1"} <= set(keys)
    assert tf.train.load_checkpoint(prefix).get_tensor("global_step") == 10
    assert (tmp_path / "graph.pbtxt").exists() and (tmp_path / "model.ckpt-10.meta").exists()


def test_import_meta_graph_and_restore_reproduce_the_session(tmp_path):
    train(tmp_path, 6, every_n_steps=3)
    reader = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-6"))
    predicted = X @ reader.get_tensor("dense/kernel") + reader.get_tensor("dense/bias")
    with tf.Graph().as_default():
        saver = tf.compat.v1.train.import_meta_graph(str(tmp_path / "model.ckpt-6.meta"))
        with tf.compat.v1.Session() as session:
            saver.restore(session, str(tmp_path / "model.ckpt-6"))
            again = session.run("output/predict:0", {"inputs/X:0": X})
    np.testing.assert_allclose(again, predicted, rtol=1e-6)


def test_a_new_run_resumes_and_continues_the_count(tmp_path):
    train(tmp_path, 5, every_n_steps=5)
    hook = train(tmp_path, 12, every_n_steps=5)
    assert hook.manager.last_checkpoint == str(tmp_path / "model.ckpt-12")
    assert steps_on_disk(tmp_path) == [5, 10, 12]


def test_a_warm_start_takes_the_variables_and_the_step_starts_at_zero(tmp_path):
    train(tmp_path / "pretrained", 6, every_n_steps=6)
    pretrained = tf.train.load_checkpoint(str(tmp_path / "pretrained" / "model.ckpt-6"))
    train(tmp_path / "finetune", 2, every_n_steps=2, restore=str(tmp_path / "pretrained"))
    train(tmp_path / "fresh", 2, every_n_steps=2)
    assert steps_on_disk(tmp_path / "finetune") == [2]

    def kernel(run: str):
        return tf.train.load_checkpoint(str(tmp_path / run / "model.ckpt-2")).get_tensor("dense/kernel")

    start = pretrained.get_tensor("dense/kernel")
    # Two steps from the pretrained weights, not from a fresh initialization four steps behind.
    assert np.abs(kernel("finetune") - start).max() < np.abs(kernel("fresh") - start).max() / 1.5


def test_restore_optimizer_takes_the_step_of_a_warm_start_too(tmp_path):
    train(tmp_path / "pretrained", 6, every_n_steps=6)
    train(tmp_path / "finetune", 10, every_n_steps=2, restore=str(tmp_path / "pretrained"),
          restore_optimizer=True)
    assert steps_on_disk(tmp_path / "finetune") == [8, 10]


def test_files_are_those_a_tf1_saver_writes(tmp_path):
    graph, train_op, inputs, targets, _ = build_graph()
    hook = CheckpointSessionHook(directory=str(tmp_path / "ours"), every_n_steps=100)
    with graph.as_default():
        hook.begin()
        saver = tf.compat.v1.train.Saver({v.op.name: v for v in tf.compat.v1.global_variables()})
        graph.finalize()
        with tf.compat.v1.Session() as session:
            session.run([v.initializer for v in tf.compat.v1.global_variables()])
            hook.after_create_session(session, None)
            for _ in range(4):
                session.run(train_op, {inputs: X, targets: Y})
                hook.after_run(tf.compat.v1.train.SessionRunContext((), session), None)
            hook.end(session)
            saver.save(session, str(tmp_path / "saver" / "model.ckpt-4"), write_meta_graph=False, write_state=False)
    for suffix in (".index", ".data-00000-of-00001"):
        assert (tmp_path / "ours" / f"model.ckpt-4{suffix}").read_bytes() == (tmp_path / "saver" / f"model.ckpt-4{suffix}").read_bytes()


def test_async_saves_work_in_graph_mode(tmp_path):
    train(tmp_path, 9, every_n_steps=3, async_save=True, max_to_keep=None)
    assert steps_on_disk(tmp_path) == [3, 6, 9]
    assert tf.train.load_checkpoint(str(tmp_path / "model.ckpt-6")).get_tensor("global_step") == 6


@pytest.mark.parametrize(
    "options, key",
    [({"include_optimizer": False}, "checkpoint.include_optimizer"),
     ({"freeze": {"output": "f.pb"}}, "freeze")],
)
def test_options_the_hook_cannot_honour_are_refused(tmp_path, options, key):
    with pytest.raises(ConfigError) as raised:
        CheckpointSessionHook(directory=str(tmp_path), every_n_steps=1, **options)
    assert raised.value.key == key


def test_the_frozen_graph_at_the_end_equals_the_session(tmp_path):
    freeze = {"output": str(tmp_path / "frozen.pb"), "input_names": ["inputs/X"], "output_names": ["output/predict"]}
    hook = train(tmp_path / "ckpt", 6, every_n_steps=3, freeze=freeze)
    assert hook.frozen.max_abs_diff == 0.0
    reader = tf.train.load_checkpoint(str(tmp_path / "ckpt" / "model.ckpt-6"))
    expected = X @ reader.get_tensor("dense/kernel") + reader.get_tensor("dense/bias")
    from tfcheckpointer.graph.files import read_graph_def

    with tf.Graph().as_default() as graph:
        (output,) = tf.compat.v1.import_graph_def(
            read_graph_def(str(tmp_path / "frozen.pb")), return_elements=["output/predict:0"], name=""
        )
    with tf.compat.v1.Session(graph=graph) as session:
        np.testing.assert_allclose(session.run(output, {"inputs/X:0": X}), expected, rtol=1e-6)
    import json

    sidecar = json.loads((tmp_path / "frozen.pb.json").read_text())
    assert sidecar["step"] == 6 and sidecar["checkpoint"] == str(tmp_path / "ckpt" / "model.ckpt-6")


class CountingSession(tf.compat.v1.Session):
    """A real session that counts its `run` calls."""

    runs = 0

    def run(self, *args, **kwargs):
        CountingSession.runs += 1
        return super().run(*args, **kwargs)


class CountingSessionCreator(tf.compat.v1.train.SessionCreator):
    def create_session(self):
        session = CountingSession()
        session.run(tf.compat.v1.global_variables_initializer())
        return session


def test_the_hook_verifies_its_frozen_graph_on_the_probe(tmp_path):
    import json

    freeze = {"output": str(tmp_path / "frozen.pb"), "input_names": ["inputs/X"], "output_names": ["output/predict"]}
    train(tmp_path / "ckpt", 2, every_n_steps=3, freeze=freeze, probe=lambda: X[:2])
    assert json.loads((tmp_path / "frozen.pb.json").read_text())["probe"] == "probe argument"


def test_the_hook_reads_the_step_with_the_train_op_not_in_a_run_of_its_own(tmp_path):
    graph, train_op, inputs, targets, prediction = build_graph()
    hook = CheckpointSessionHook(directory=str(tmp_path), every_n_steps=10, save_meta_graph=False)
    with graph.as_default():
        with tf.compat.v1.train.MonitoredSession(CountingSessionCreator(), hooks=[hook]) as session:
            before = CountingSession.runs
            for _ in range(40):
                session.run(train_op, {inputs: X, targets: Y})
            train_runs = CountingSession.runs - before
    assert steps_on_disk(tmp_path) == [10, 20, 30, 40]
    # One run per train step, plus per save its snapshot and at most two exact reads of
    # the step (the fetched value may already include the step's increment, so a read
    # can come one step early): 52 at most, not one more run every step (84).
    assert train_runs <= 40 + 3 * 4, train_runs


def run_for(directory, hooks_of, **options):
    """Train in a MonitoredTrainingSession with the hooks `hooks_of(our_hook)` lists; return the final step."""
    graph, train_op, inputs, targets, _ = build_graph()
    hook = CheckpointSessionHook(directory=str(directory), **options)
    with graph.as_default():
        with tf.compat.v1.train.MonitoredTrainingSession(hooks=hooks_of(hook)) as session:
            while not session.should_stop():
                session.run(train_op, {inputs: X, targets: Y})
        return tf.train.load_checkpoint(hook.manager.last_checkpoint).get_tensor("global_step")


@pytest.mark.parametrize("ours_first", [False, True], ids=["stop_hook_first", "ours_first"])
def test_stop_at_step_num_steps_counts_from_the_restored_step_whatever_the_order(tmp_path, ours_first):
    def hooks(hook):
        stop = tf.compat.v1.train.StopAtStepHook(num_steps=10)
        return [hook, stop] if ours_first else [stop, hook]

    assert run_for(tmp_path, hooks, every_n_steps=5) == 10
    assert run_for(tmp_path, hooks, every_n_steps=5) == 20
    assert steps_on_disk(tmp_path)[-2:] == [15, 20]


class _PreemptOnce(tf.compat.v1.train.SessionRunHook):
    """Raises AbortedError once the step reaches `at`, as a preempted worker would."""

    def __init__(self, at: int):
        self.at, self.done = at, False

    def begin(self):
        self.step = tf.compat.v1.train.get_global_step()

    def before_run(self, run_context):
        return tf.compat.v1.train.SessionRunArgs(self.step)

    def after_run(self, run_context, run_values):
        if not self.done and run_values.results >= self.at:
            self.done = True
            raise tf.errors.AbortedError(None, None, "preempted")


def test_a_session_recreated_after_preemption_resumes_although_the_planned_checkpoint_is_gone(tmp_path):
    train(tmp_path, 4, every_n_steps=2, max_to_keep=2)  # plans model.ckpt-4 for the next run

    def hooks(hook):
        return [hook, tf.compat.v1.train.StopAtStepHook(num_steps=16), _PreemptOnce(12)]

    # By step 12 retention has deleted model.ckpt-4; the recreated session must not read it.
    assert run_for(tmp_path, hooks, every_n_steps=2, max_to_keep=2) == 20
    assert steps_on_disk(tmp_path) == [18, 20]


def test_a_damaged_newest_checkpoint_is_skipped_before_the_session_starts(tmp_path):
    train(tmp_path, 5, every_n_steps=3)
    data = tmp_path / "model.ckpt-5.data-00000-of-00001"
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 3] ^= 0xFF  # the step, read first, stays intact
    data.write_bytes(bytes(damaged))
    hook = train(tmp_path, 8, every_n_steps=3)
    assert hook.manager.last_checkpoint == str(tmp_path / "model.ckpt-8")
    assert steps_on_disk(tmp_path) == [3, 6, 8]


def test_a_scaffold_init_fn_runs_before_the_restore_not_over_it(tmp_path):
    train(tmp_path, 5, every_n_steps=5)
    saved = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-5")).get_tensor("dense/kernel")
    graph, *_ = build_graph()
    hook = CheckpointSessionHook(directory=str(tmp_path), every_n_steps=5)
    with graph.as_default():
        (kernel,) = [v for v in tf.compat.v1.global_variables() if v.op.name == "dense/kernel"]
        zero = kernel.assign(tf.zeros_like(kernel))  # stands for loading pretrained weights
        scaffold = tf.compat.v1.train.Scaffold(init_fn=lambda _, session: session.run(zero))
        with tf.compat.v1.train.MonitoredTrainingSession(scaffold=scaffold, hooks=[hook]) as session:
            np.testing.assert_array_equal(session.run(kernel), saved)


def session_with(directory, hooks_of, *, steps: int = 3, count_steps: bool = True, **options):
    """Train `steps` runs in a MonitoredTrainingSession; `hooks_of(our hook)` gives
    `(hooks, MonitoredTrainingSession keyword arguments)`."""
    graph, train_op, inputs, targets, _ = build_graph(count_steps=count_steps)
    hook = CheckpointSessionHook(directory=str(directory), **options)
    hooks, session_options = hooks_of(hook)
    with graph.as_default():
        with tf.compat.v1.train.MonitoredTrainingSession(hooks=hooks, **session_options) as session:
            for _ in range(steps):
                session.run(train_op, {inputs: X, targets: Y})
    return hook


def test_a_train_op_that_never_moves_the_step_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"The global step has stayed at 0 for 100 runs.*HINT: pass global_step="):
        session_with(tmp_path, lambda hook: ([hook], {}), steps=150, count_steps=False, every_n_steps=5)
    assert steps_on_disk(tmp_path) == []


def test_monitored_training_session_checkpoint_dir_on_our_directory_is_refused_before_any_write(tmp_path):
    directory = tmp_path / "ckpt"
    with pytest.raises(CheckpointError, match=r"^MonitoredTrainingSession\(checkpoint_dir=.*test_hook\.py:\d+; the two would overwrite") as raised:
        session_with(directory, lambda hook: ([hook], {"checkpoint_dir": str(directory), "save_checkpoint_steps": 4}),
                     every_n_steps=5)
    assert "\n" not in str(raised.value)
    # MonitoredTrainingSession runs its summary hooks' begin() before the user's hooks, so
    # their events file is there already; no checkpoint, state or graph file is.
    assert [p.name for p in directory.iterdir() if not p.name.startswith("events.out.tfevents.")] == []


def test_a_tensorflow_checkpoint_saver_hook_on_our_directory_is_refused(tmp_path):
    directory = tmp_path / "ckpt"

    def hooks(hook):
        return [hook, tf.compat.v1.train.CheckpointSaverHook(str(directory), save_steps=4)], {}

    with pytest.raises(CheckpointError, match="^A CheckpointSaverHook saves to .*ckpt, the directory of CheckpointSessionHook created at"):
        session_with(directory, hooks, every_n_steps=5)
    assert not directory.exists() or not any(directory.iterdir())


def test_a_second_hook_on_the_same_directory_is_refused(tmp_path):
    def hooks(hook):
        return [hook, CheckpointSessionHook(directory=str(tmp_path), every_n_steps=2)], {}

    with pytest.raises(CheckpointError, match=r"^Two CheckpointSessionHooks on .* in one session: CheckpointSessionHook created at .*test_hook\.py:\d+ and CheckpointSessionHook created at"):
        session_with(tmp_path, hooks, every_n_steps=5)
    assert not any(tmp_path.iterdir())


def test_a_finalized_graph_is_one_clear_error(tmp_path):
    graph, *_ = build_graph()
    hook = CheckpointSessionHook(directory=str(tmp_path), every_n_steps=2)
    graph.finalize()
    with graph.as_default(), pytest.raises(CheckpointError, match=r"begin\(\) got a finalized graph.*HINT: call begin\(\) before graph.finalize\(\)"):
        hook.begin()


def test_wrong_output_names_are_refused_at_begin_before_any_write(tmp_path):
    freeze = {"output": str(tmp_path / "frozen.pb"), "input_names": ["inputs/X"], "output_names": ["output/predcit"]}
    with pytest.raises(FreezeError, match=r"Output name 'output/predcit' is not a node of the graph CheckpointSessionHook.begin\(\) got. Closest: 'output/predict'.* HINT: give freeze.output_names"):
        session_with(tmp_path / "ckpt", lambda hook: ([hook], {}), every_n_steps=1, freeze=freeze)
    assert not (tmp_path / "ckpt").exists()


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """A run whose freeze config names tensors (`:0`), frozen at the end."""
    directory = tmp_path_factory.mktemp("frozen_run")
    freeze = {"output": str(directory / "frozen.pb"), "input_names": ["inputs/X:0"], "output_names": ["output/predict:0"]}
    hook = train(directory / "ckpt", 4, every_n_steps=4, freeze=freeze)
    return directory, hook


def test_tensor_names_with_their_first_output_suffix_work(frozen_run):
    _, hook = frozen_run
    assert hook.frozen.max_abs_diff == 0.0


def test_freezing_the_hooks_meta_needs_no_names(frozen_run, tmp_path, capsys):
    directory, _ = frozen_run
    meta = str(directory / "ckpt" / "model.ckpt-4.meta")
    assert main(["freeze", "--meta", meta, "-o", str(tmp_path / "again.pb")]) == 0, capsys.readouterr().err
    described = inspect_graph_file(str(tmp_path / "again.pb"))
    assert [i["name"] for i in described["inputs"]] == ["inputs/X"]
    assert [o["name"] for o in described["outputs"]] == ["output/predict"]


def test_the_meta_and_graph_file_hold_none_of_the_hooks_own_nodes(frozen_run):
    directory, _ = frozen_run
    meta, _ = read_meta_graph_def(str(directory / "ckpt" / "model.ckpt-4.meta"))
    graph_file = read_graph_def(str(directory / "ckpt" / "graph.pbtxt"))
    for graph_def in (meta.graph_def, graph_file):
        names = [node.name for node in graph_def.node]
        assert "output/predict" in names
        assert [n for n in names if n.startswith("tfcheckpointer")] == []


def test_the_hooks_frozen_graph_has_no_dead_functions_and_inspect_calls_it_frozen(frozen_run):
    directory, _ = frozen_run
    described = inspect_graph_file(str(directory / "frozen.pb"))
    assert (described["frozen"], described["functions"]) == (True, [])
