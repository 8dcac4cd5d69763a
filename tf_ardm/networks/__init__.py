"""Order-agnostic networks: f(x_in, t, known_mask) -> logits.

Every network maps int32 x_in [B, *shape], int32 t [B] (the number of known
variables) and a float32 mask [B, *shape] to float32 logits [B, *shape, K].
"""
