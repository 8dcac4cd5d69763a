"""The servable SavedModel of a trained model (pure TF ops)."""
