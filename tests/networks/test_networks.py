"""Networks: ALiBi attention biases, the Transformer's position_bias, GroupNorm."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from tf_ardm import networks
from tf_ardm.networks import layers


@pytest.mark.parametrize("num_heads", [1, 2, 8])
def test_alibi_bias_values(num_heads):
  n = 7
  bias = layers.alibi_bias(n, num_heads).numpy()
  assert bias.shape == (num_heads, n, n) and bias.dtype == np.float32
  slopes = 2.0 ** (-8.0 * np.arange(1, num_heads + 1) / num_heads)
  distance = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
  np.testing.assert_allclose(bias, -slopes[:, None, None] * distance, rtol=1e-6)
  np.testing.assert_array_equal(bias, np.transpose(bias, [0, 2, 1]))  # Symmetric.
  assert (np.diagonal(bias, axis1=1, axis2=2) == 0).all() and (bias <= 0).all()
  # Translation invariant: it depends on i - j only.
  np.testing.assert_array_equal(bias[:, 2:, 2:], bias[:, :-2, :-2])
  if num_heads == 8:
    np.testing.assert_allclose(slopes[[0, -1]], [0.5, 2.0**-8])  # ALiBi's 1/2 .. 1/256.


_N, _HEADS = 6, 2


def _attention_weights(x, bias):
  """The attention matrices float64 [H, N, N] of an identity-valued SelfAttention.

  The value and output projections are the identity and the head width is
  N, so the output of head h is W_h @ x_h, and W_h = output_h @ inv(x_h).
  """
  attention = layers.SelfAttention(_N * _HEADS, _HEADS, use_bias=False,
                                   kernel_initializer=tf.keras.initializers.RandomNormal(
                                       stddev=0.2, seed=1))
  attention(tf.constant(x[None], tf.float32), bias=bias)  # Builds the kernels.
  eye = np.eye(_N * _HEADS, dtype=np.float32)
  attention.v.kernel.assign(eye)
  attention.out.kernel.assign(eye)
  out = attention(tf.constant(x[None], tf.float32), bias=bias)[0].numpy().astype(np.float64)
  heads = [slice(h * _N, (h + 1) * _N) for h in range(_HEADS)]
  return np.stack([out[:, s] @ np.linalg.inv(x[:, s]) for s in heads])


def test_alibi_attention_adds_the_bias_to_the_logits_and_is_translation_equivariant():
  # Orthogonal blocks x_h: W_h = output_h @ x_h^T loses no precision.
  rng = np.random.default_rng(0)
  x = np.concatenate([np.linalg.qr(rng.normal(size=(_N, _N)))[0] * 2.0
                      for _ in range(_HEADS)], axis=1)
  bias = layers.alibi_bias(_N, _HEADS)
  plain, alibi = _attention_weights(x, None), _attention_weights(x, bias)
  np.testing.assert_allclose(plain.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(alibi.sum(-1), 1.0, atol=1e-5)
  # log W_alibi - log W_plain = bias + a constant per row (the softmax normaliser).
  diff = np.log(alibi) - np.log(plain) - bias.numpy()
  np.testing.assert_allclose(diff - diff[..., :1], 0.0, atol=1e-5)
  # Shifting the content by s shifts the (unnormalised) weights among the
  # positions that stay in the window: ratios W[i, j] / W[i, k] are kept.
  s = 2
  keep = slice(0, _N - s)
  shifted = _attention_weights(np.roll(x, s, axis=0), bias)
  log_ratio = lambda w, i: np.log(w[:, i, :]) - np.log(w[:, i, :1])
  for i in range(_N - s):
    np.testing.assert_allclose(
        log_ratio(shifted[:, s:, s:], i)[:, keep], log_ratio(alibi, i)[:, keep], atol=1e-5)
  # Without positions, plain attention is equivariant under any permutation;
  # ALiBi's is not (a swap of two positions changes their distances).
  swap = [1, 0, 2, 3, 4, 5]
  swapped = lambda w: w[:, swap][:, :, swap]
  np.testing.assert_allclose(swapped(_attention_weights(x[swap], None)), plain, atol=1e-5)
  assert np.abs(swapped(_attention_weights(x[swap], bias)) - alibi).max() > 1e-3


def test_transformer_with_alibi_differs_from_none_with_the_same_weights():
  config = tiny_config("text", shape=(16, 1), num_classes=28)
  nets = {}
  for bias in ("none", "alibi"):
    config.network_kwargs = dict(num_layers=1, dim=16, num_heads=2, mlp_dim=32,
                                 position_bias=bias)
    nets[bias] = networks.build(config)
  x = tf.random.stateless_uniform([2, 16, 1], [0, 1], 0, 29, tf.int32)
  t, mask = tf.zeros([2], tf.int32), tf.zeros([2, 16, 1])
  plain = nets["none"](x, t, mask)
  nets["alibi"](x, t, mask)  # Builds its weights.
  for a, b in zip(nets["alibi"].weights, nets["none"].weights):
    a.assign(b)
  same_weights = nets["alibi"](x, t, mask)
  assert same_weights.shape == (2, 16, 1, 28)
  assert np.abs(same_weights - plain).max() > 1e-3
  nets["none"].bias = nets["alibi"].bias  # The bias is the only difference.
  np.testing.assert_allclose(nets["none"](x, t, mask), same_weights, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="unknown position_bias"):
    config.network_kwargs["position_bias"] = "rotary"
    networks.build(config)


@pytest.mark.parametrize("shape,groups", [([4, 8, 8, 64], 32), ([3, 5, 6], 2), ([2, 16, 48], 16)])
def test_group_norm_matches_keras_group_normalization_and_its_gradient(shape, groups):
  """tf_ardm's GroupNorm (its own statistics and closed-form gradient) is
  Keras' GroupNormalization, forward and backward, with the same weights."""
  rng = np.random.default_rng(1)
  x = tf.constant(rng.normal(2.0, 3.0, size=shape), tf.float32)
  cotangent = tf.constant(rng.normal(size=shape), tf.float32)
  ours = layers.GroupNorm(groups, epsilon=1e-6)
  keras = tf.keras.layers.GroupNormalization(groups=groups, epsilon=1e-6)
  for layer in (ours, keras):
    layer.build(x.shape)
  assert [w.name.split("/")[-1] for w in ours.weights] == [
      w.name.split("/")[-1] for w in keras.weights] == ["gamma:0", "beta:0"]
  keras.gamma.assign(rng.normal(size=shape[-1]).astype(np.float32))
  ours.gamma.assign(keras.gamma)
  ours.beta.assign(tf.range(shape[-1], dtype=tf.float32) / 10)
  keras.beta.assign(ours.beta)
  results = []
  for layer in (keras, ours):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x)
      loss = tf.reduce_sum(tf.nn.swish(y) * cotangent)
    results.append([y, *tape.gradient(loss, [x, layer.gamma, layer.beta])])
  for want, got in zip(*results):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=2e-5)
