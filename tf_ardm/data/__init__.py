"""Datasets (int32 arrays and tf.data pipelines)."""
