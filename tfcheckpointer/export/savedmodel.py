"""A SavedModel built from a frozen GraphDef, for TF Serving and `tf.saved_model.load`.

The frozen graph holds every weight as a constant, so the SavedModel is that
same graph imported into a TF1 graph, with one `serving_default` signature
whose keys are the frozen graph's input and output node names. Its
`variables/` holds an empty checkpoint: TF Serving and `tf.saved_model.load`
both expect the directory and accept it empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from tfcheckpointer.graph.signature import TensorInfo

SIGNATURE_KEY = "serving_default"


def write_saved_model(
    graph_def: tf.compat.v1.GraphDef,
    inputs: Sequence[TensorInfo],
    outputs: Sequence[TensorInfo],
    directory: str,
) -> None:
    """Write a SavedModel (tag `serve`) of the frozen `graph_def` into the new `directory`.

    Args:
        graph_def: The verified frozen graph.
        inputs: Its input nodes; each is a signature input keyed by its node name.
        outputs: Its output nodes; each is a signature output keyed by its node name.
        directory: Must not exist yet (the SavedModel builder refuses to overwrite).
    """
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name="")
        signature = tf.compat.v1.saved_model.signature_def_utils.build_signature_def(
            inputs={t.name: t.as_proto() for t in inputs},
            outputs={t.name: t.as_proto() for t in outputs},
            method_name=tf.compat.v1.saved_model.signature_constants.PREDICT_METHOD_NAME,
        )
        builder = tf.compat.v1.saved_model.Builder(directory)
        with tf.compat.v1.Session(graph=graph) as session:
            builder.add_meta_graph_and_variables(
                session,
                [tf.compat.v1.saved_model.tag_constants.SERVING],
                signature_def_map={SIGNATURE_KEY: signature},
                strip_default_attrs=True,
            )
        builder.save()

