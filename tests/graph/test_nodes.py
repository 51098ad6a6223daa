"""Pruning a GraphDef's function library down to the functions its nodes call."""

from __future__ import annotations

import tensorflow as tf
from google.protobuf import text_format

from tfcheckpointer.graph.nodes import prune_unused_functions

GRAPH = """
node { name: "x" op: "Placeholder" attr { key: "dtype" value { type: DT_BOOL } } }
node { name: "if" op: "If" input: "x"
       attr { key: "then_branch" value { func { name: "then" } } }
       attr { key: "else_branch" value { func { name: "else" } } } }
library {
  function { signature { name: "then" } node_def { name: "call" op: "helper" } }
  function { signature { name: "else" } }
  function { signature { name: "helper" } }
  function { signature { name: "dead" } node_def { name: "call" op: "dead_helper" } }
  function { signature { name: "dead_helper" } }
  gradient { function_name: "dead" gradient_func: "dead_helper" }
  gradient { function_name: "helper" gradient_func: "else" }
}
"""


def test_functions_called_through_attributes_and_other_functions_stay_the_rest_go():
    graph_def = text_format.Parse(GRAPH, tf.compat.v1.GraphDef())
    assert prune_unused_functions(graph_def) == ["dead", "dead_helper"]
    assert sorted(f.signature.name for f in graph_def.library.function) == ["else", "helper", "then"]
    assert [g.function_name for g in graph_def.library.gradient] == ["helper"]


def test_a_graph_without_dead_functions_is_left_alone():
    graph_def = text_format.Parse(GRAPH, tf.compat.v1.GraphDef())
    prune_unused_functions(graph_def)
    before = graph_def.SerializeToString()
    assert prune_unused_functions(graph_def) == []
    assert graph_def.SerializeToString() == before


def test_the_gradient_function_of_a_kept_function_is_kept_with_its_registration():
    graph_def = text_format.Parse(
        """
        node { name: "call" op: "forward" }
        library {
          function { signature { name: "forward" } }
          function { signature { name: "forward_grad" } }
          gradient { function_name: "forward" gradient_func: "forward_grad" }
        }
        """,
        tf.compat.v1.GraphDef(),
    )
    assert prune_unused_functions(graph_def) == []
    assert sorted(f.signature.name for f in graph_def.library.function) == ["forward", "forward_grad"]
