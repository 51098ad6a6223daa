"""TF1 Saver checkpoints: naming, policies, writing, resolving, restoring, managing.

This layer imports TensorFlow but not Keras: the Keras and TF1 training
loops reach it through the adapters in `tfcheckpointer.integrations`.
"""
