"""Graph files: reading and writing them, freezing, optimizing, MetaGraphDefs, inspecting, converting.

Keras is imported only by the modules that freeze a Keras model
(`keras_freeze`, `metagraph`, `keras_checkpoint`); reading, converting and
inspecting graph files never load it.
"""
