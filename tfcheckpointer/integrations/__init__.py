"""Training-loop adapters over the checkpoint manager: the Keras callback, the TF1 hook, the job runner."""
