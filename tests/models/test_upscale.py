"""Upscale ARDMs: transitions (spec §11 cases 12-16), the stage objective,
sampling and the reduction of a one-stage model to OA."""
import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import ConstantLogits
from tf_ardm.generation import distributions
from tf_ardm.networks import fixed_point
from tf_ardm.generation import masks
from tf_ardm import models
from tf_ardm.generation import sampling
from tf_ardm.serving import servable
from tf_ardm import transitions as tr
from tf_ardm.config import ModelConfig
from tf_ardm.errors import UserError
from tf_ardm.models.ardm import Denoiser
from tf_ardm.models.upscale import UpscaleDenoiser


def upscale_config(shape=(2, 2, 3), k=256, b=4, transition="zero_lsb",
                   parametrization="data", kind="image"):
  return ModelConfig("x", kind, list(shape), k, "unet", {}, model_type="upscale",
                     branching=b, transition=transition, parametrization=parametrization)


@pytest.mark.parametrize("k,b,stages", [
    (256, 2, 8), (256, 4, 4), (256, 16, 2), (256, 256, 1),
    (65536, 2, 16), (65536, 4, 8), (65536, 16, 4), (65536, 256, 2), (8, 2, 3)])
def test_spec_case12_stage_counts(k, b, stages):
  assert tr.num_stages(k, b) == stages


def test_stage_count_is_exact_where_floating_logs_are_not():
  # ceil(log(125) / log(5)) is 4 in floating point; 5^3 = 125 needs 3 stages.
  assert math.ceil(math.log(125) / math.log(5)) == 4
  assert tr.num_stages(125, 5) == 3


def test_spec_case13_zero_lsb_k8_b2():
  t = tr.zero_least_significant_digit(8, 2)
  np.testing.assert_array_equal(t.cumulative()[1:], [
      [0, 0, 2, 2, 4, 4, 6, 6], [0, 0, 0, 0, 4, 4, 4, 4], [0] * 8])
  nonzero = [{(int(o), int(i)) for o, i in zip(*np.nonzero(p))} for p in t.matrices()]
  assert nonzero == [
      {(0, 0), (0, 1), (2, 2), (2, 3), (4, 4), (4, 5), (6, 6), (6, 7)},
      {(0, 0), (0, 2), (4, 4), (4, 6)},
      {(0, 0), (0, 4)}]
  bar = t.cumulative_matrices()
  np.testing.assert_array_equal(bar[0], np.eye(8))
  # Pbar[r] = P[r-1] Pbar[r-1].
  for r in range(1, 4):
    np.testing.assert_array_equal(bar[r], t.matrices()[r - 1] @ bar[r - 1])


def test_spec_case14_chain_and_supports():
  config = upscale_config((1, 1, 1))
  denoiser = UpscaleDenoiser(config, ConstantLogits(np.zeros(256)))
  x = tf.fill([4, 1, 1, 1], 201)
  future, past = denoiser.stage_inputs(x, tf.range(4))
  assert np.ravel(past).tolist() == [0, 192, 192, 200]
  assert np.ravel(future).tolist() == [192, 192, 200, 201]
  logp = denoiser.stage_logits(tf.zeros([4, 1, 1, 1, 256]), past, tf.range(4))
  supports = [np.nonzero(row > -1e9)[0].tolist() for row in np.reshape(logp, [4, 256])]
  assert supports == [[0, 64, 128, 192], [192, 208, 224, 240], [192, 196, 200, 204],
                      [200, 201, 202, 203]]


def test_spec_case15_data_parametrization_nonuniform_theta():
  config = upscale_config((1, 1, 1))
  denoiser = UpscaleDenoiser(config, ConstantLogits(np.zeros(256)))
  theta = np.log(np.arange(1, 257, dtype=np.float32))
  logits = tf.constant(np.tile(theta, [2, 1]).reshape([2, 1, 1, 1, 256]))
  past = tf.constant([0, 200], shape=[2, 1, 1, 1])
  probs = np.exp(denoiser.stage_logits(logits, past, tf.constant([0, 3])).numpy())
  probs = probs.reshape(2, 256)
  np.testing.assert_allclose(probs[0, [0, 64, 128, 192]],
                             [0.063230, 0.187743, 0.312257, 0.436770], atol=1e-6)
  np.testing.assert_allclose(probs[1, 200:204],
                             [0.248148, 0.249383, 0.250617, 0.251852], atol=1e-6)
  np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)


def test_spec_case16_augmented_spaces():
  t4 = tr.augment_least_significant_digit(256, 4)
  assert (t4.num_stages, t4.absorbing, t4.input_classes) == (4, 340, 341)
  assert t4.cumulative()[:, 201].tolist() == [201, 256 + 50, 320 + 12, 336 + 3, 340]
  blocks = [sorted(set(row[:256].tolist())) for row in t4.cumulative()[1:4]]
  assert blocks == [list(range(256, 320)), list(range(320, 336)), list(range(336, 340))]
  t2 = tr.augment_least_significant_digit(256, 2)
  assert (t2.num_stages, t2.absorbing, t2.input_classes) == (8, 510, 511)
  text = tr.augment_text8()
  assert (text.num_stages, text.absorbing, text.input_classes) == (2, 30, 31)
  first = text.cumulative()[1]
  assert first[:2].tolist() == [0, 1]
  assert [first[v] for v in tr.TEXT8_VOWELS] == [28] * 5
  assert set(first[np.setdiff1d(np.arange(2, 28), tr.TEXT8_VOWELS)]) == {29}
  assert set(text.cumulative()[2][:28]) == {30}
  np.testing.assert_array_equal(text.cumulative_matrices()[0][:28, :28], np.eye(28))


@pytest.mark.parametrize("transition,b,parametrization", [
    ("zero_lsb", 2, "data"), ("zero_lsb", 4, "data"), ("zero_lsb", 16, "data"),
    ("augment", 4, "data"), ("augment", 2, "data"),
    ("zero_lsb", 4, "direct"), ("zero_lsb", 2, "direct")])
def test_uniform_theta_gives_8_bits_per_dim_for_every_stage_and_t(transition, b,
                                                                  parametrization):
  """Spec §11.6: uniform theta costs log2(b) per stage and 8 bits in total."""
  config = upscale_config((2, 2, 3), 256, b, transition, parametrization)
  denoiser = UpscaleDenoiser(config, ConstantLogits(np.zeros(config.output_classes)))
  d, stages = 12, config.num_stages
  t = np.arange(stages * d, dtype=np.int32)  # Every stage and every t.
  x = tf.random.stateless_uniform([len(t), 2, 2, 3], [3, 4], 0, 256, tf.int32)
  terms = denoiser.elbo_terms(x, masks.sample_sigma(len(t), d, seed=[1, 1]), tf.constant(t))
  np.testing.assert_allclose(terms["elbo"], -8.0, atol=1e-4)
  np.testing.assert_allclose(terms["elbo_per_t"] * d, -math.log2(b), atol=1e-5)


class KnownValueLogits(tf.keras.layers.Layer):
  """Logits that depend on the known values x*known, t and known, nothing else.

  The known mask is the first C mask channels, so the layer gives the same
  logits to an OA model (absorbing K//2) and a one-stage Upscale model
  (absorbing 0, one extra stage channel).
  """

  def __init__(self, shape, num_classes, **kwargs):
    super().__init__(**kwargs)
    d = int(np.prod(shape))
    self.channels, self.k = shape[-1], num_classes
    self.w = tf.random.stateless_normal([d, d * num_classes], [5, 6])
    self.v = tf.random.stateless_normal([d * num_classes], [7, 8])

  def call(self, x_in, t, mask, training=False):
    known = mask[..., :self.channels]
    batch = tf.shape(x_in)[0]
    values = tf.reshape(tf.cast(x_in, tf.float32) * known, [batch, -1])
    h = values @ self.w / 10.0 + tf.cast(t, tf.float32)[:, None] * self.v / 5.0
    return tf.reshape(h, tf.concat([tf.shape(x_in), [self.k]], 0))


def test_one_stage_upscale_is_oa():
  shape, k = (2, 2, 1), 5
  network = KnownValueLogits(shape, k)
  oa = Denoiser(ModelConfig("x", "image", list(shape), k, "unet", {}), network)
  up = UpscaleDenoiser(upscale_config(shape, k, b=k), network)
  assert up.num_stages == 1 and up.config.absorbing == 0 and oa.config.absorbing == 2
  x = tf.random.stateless_uniform([6, *shape], [1, 2], 0, k, tf.int32)
  sigma = masks.sample_sigma(6, 4, seed=[3, 3])
  t = tf.constant([0, 1, 2, 3, 1, 2])
  for key in ("elbo", "elbo_per_t", "nce"):
    np.testing.assert_allclose(up.elbo_terms(x, sigma, t)[key],
                               oa.elbo_terms(x, sigma, t)[key], rtol=1e-5)
  for policy in ([0, 1, 2, 3], [0, 2]):
    np.testing.assert_allclose(up.log_prob_bits(x, sigma, policy),
                               oa.log_prob_bits(x, sigma, policy), rtol=1e-5)
  index = tf.constant([0, 1, 0, 1, 0, 1])
  np.testing.assert_allclose(up.elbo_with_policy(x, sigma, [0, 2], index),
                             oa.elbo_with_policy(x, sigma, [0, 2], index), rtol=1e-5)
  for policy in ([0, 1, 2, 3], [0, 3]):
    np.testing.assert_array_equal(sampling.sample(up, 8, policy, tf.constant([4, 2])),
                                  sampling.sample(oa, 8, policy, tf.constant([4, 2])))


class RandomLogits(tf.keras.layers.Layer):
  """Sharp random logits [B, *shape, n], fresh for every (t, stage) input."""

  def __init__(self, num_outputs, **kwargs):
    super().__init__(**kwargs)
    self.n = num_outputs

  def call(self, x_in, t, mask, training=False):
    seed = tf.stack([tf.reduce_sum(t), tf.reduce_sum(tf.cast(mask, tf.int32))])
    return 4.0 * tf.random.stateless_normal(tf.concat([tf.shape(x_in), [self.n]], 0), seed)


# (kind, shape, K, b, transition, parametrization) of small Upscale models.
MODEL_CASES = [
    ("image", (2, 2, 3), 256, 4, "zero_lsb", "data"),
    ("image", (2, 2, 3), 256, 2, "augment", "data"),
    ("image", (2, 2, 3), 256, 4, "zero_lsb", "direct"),
    ("image", (2, 2, 1), 8, 2, "zero_lsb", "direct"),
    ("text", (6, 1), 28, 0, "text8", "data")]


@pytest.mark.parametrize("kind,shape,k,b,transition,parametrization", MODEL_CASES)
def test_samples_lie_in_the_value_range_and_follow_the_stages(kind, shape, k, b, transition,
                                                              parametrization):
  config = upscale_config(shape, k, b, transition, parametrization, kind)
  denoiser = UpscaleDenoiser(config, RandomLogits(config.output_classes))
  d = int(np.prod(shape))
  for policy in (np.arange(d), [0, d // 2]):
    x = sampling.sample(denoiser, 64, policy, tf.constant([1, 2])).numpy()
    assert x.min() >= 0 and x.max() < k
  # Every stage only adds detail: one downscaling step maps its output back
  # to its input.
  steps = config.upscale_transition.steps
  state = tf.fill([16, *shape], config.absorbing)
  for s in range(config.num_stages):
    stage = tf.fill([16], s)
    sigma = masks.sample_sigma(16, d, seed=[s, 9])
    new = sampling.sample_with_policy(denoiser, state, sigma, [0, 1], [s, 1], stage,
                                      past=state).numpy()
    np.testing.assert_array_equal(steps[config.num_stages - 1 - s][new], state)
    state = new
  assert state.max() < k


def test_choices_list_what_each_step_undoes():
  table, counts = tr.zero_least_significant_digit(8, 2).choices()
  assert table[1][4].tolist() == [4, 6] and counts[1].tolist() == [2, 0, 0, 0, 2, 0, 0, 0]
  table, counts = tr.augment_text8().choices()
  assert table[1][30][:4].tolist() == [0, 1, 28, 29] and counts[1][30] == 4
  assert table[0][28][:5].tolist() == list(tr.TEXT8_VOWELS) and table[0][28][5] == 2
  assert counts[0][[0, 1, 28, 29]].tolist() == [1, 1, 5, 21]


@pytest.mark.parametrize("transition", [tr.zero_least_significant_digit(16, 2),
                                        tr.augment_least_significant_digit(16, 4),
                                        tr.augment_text8()])
def test_class_segments_group_the_data_classes_by_their_value_after_r_steps(transition):
  order, bounds = transition.class_segments()
  reach = transition.cumulative()[:, :transition.num_classes]
  for r in range(transition.num_stages + 1):
    assert sorted(order[r].tolist()) == list(range(transition.num_classes))
    for v in range(transition.input_classes):
      members = order[r][bounds[r][v]:bounds[r][v + 1]]
      assert sorted(members.tolist()) == np.flatnonzero(reach[r] == v).tolist()


@pytest.mark.parametrize("kind,shape,k,b,transition,parametrization", MODEL_CASES)
def test_codec_choices_invert_and_carry_the_stage_distribution(kind, shape, k, b, transition,
                                                               parametrization):
  """choice and chosen_value are inverse; choice_frequencies is the stage
  distribution on the possible choices, with a floor of about 2^-16, zero
  elsewhere (integer logits at fixed_point.TABLE_EXPONENT)."""
  config = upscale_config(shape, k, b, transition, parametrization, kind)
  denoiser = UpscaleDenoiser(config, ConstantLogits(np.zeros(config.output_classes)))
  batch = 4 * config.num_stages
  x = tf.random.stateless_uniform([batch, *shape], [6, 7], 0, k, tf.int32)
  stage = tf.range(batch) % config.num_stages
  future, past = denoiser.stage_inputs(x, stage)
  choice = denoiser.choice(future, past, stage)
  assert 0 <= choice.numpy().min() and choice.numpy().max() < denoiser.num_choices
  np.testing.assert_array_equal(denoiser.chosen_value(choice, past, stage), future)
  scale = 2.0**fixed_point.TABLE_EXPONENT
  integer_logits = tf.cast(tf.round(3.0 * scale * tf.random.stateless_normal(
      [batch, *shape, config.output_classes], [8, 9])), tf.int64)
  table = tf.constant(fixed_point.exp_table())
  freqs = denoiser.choice_frequencies(
      integer_logits, past, stage, lambda l: fixed_point.softmax_weights(l, table)).numpy()
  assert freqs.dtype == np.int64
  probs = freqs / freqs.sum(-1, keepdims=True)
  logits = tf.cast(integer_logits, tf.float32) / scale
  log_p = distributions.log_prob(denoiser.stage_logits(logits, past, stage),
                                 denoiser.target(future, stage))
  picked = np.take_along_axis(probs, choice.numpy()[..., None], -1)[..., 0]
  bound = 2.0**-16 * denoiser.num_choices + 2.0**-19
  np.testing.assert_allclose(picked, np.exp(log_p), atol=bound)
  possible = freqs > 0
  assert np.all(picked > 0) and probs[possible].min() >= 2.0**-16 / (1 + 2.0**-16 * 21)
  # text8 pads its rows of 1-21 possible values to A = 21 choices.
  assert possible.all() == (transition != "text8")
  # Exact: each choice's mass is the integer sum of the softmax weights of
  # the data classes (reaching x_past) that r steps map to it.
  if parametrization == "data":
    steps = config.upscale_transition.cumulative()[:, :k]
    level = config.num_stages - 1 - stage.numpy()
    values, real = (v.numpy() for v in denoiser.space._choices(past, stage))
    past_np, logits_np = past.numpy(), integer_logits.numpy()
    for i in range(0, batch, 3):
      reach = steps[level[i] + 1][None] == past_np[i].reshape(-1, 1)  # [P, K]
      masked = np.where(reach, logits_np[i].reshape(-1, k),
                        logits_np[i].min() - 2**30)
      weights = np.where(reach, fixed_point.softmax_weights(
          tf.constant(masked), table).numpy(), 0)
      hits = steps[level[i]][None, None, :] == values[i].reshape(len(masked), -1, 1)
      mass = (hits * weights[:, None, :]).sum(-1).reshape(values[i].shape)
      expected = fixed_point.frequencies(tf.constant(mass), tf.constant(real[i])).numpy()
      np.testing.assert_array_equal(freqs[i], expected)


@pytest.mark.parametrize("args,message", [
    (("zero_lsb", 256, 3), "K must be a power of it"),
    (("augment", 256, 6), "K must be a power of it"),
    (("zero_lsb", 17, 4), "does not fit K = 17"),
    (("zero_lsb", 256, 512), r"must lie in \[2, 256\]"),
    (("zero_lsb", 256, 1), r"must lie in \[2, 256\]"),
    (("text8", 256, 4, "image"), "only applies to text data"),
    (("text8", 17, 4, "text"), "needs text8 data"),
    (("augment", 256, 4, "image", "direct"), "direct parametrization needs digits"),
])
def test_bad_transitions_give_clear_errors(args, message):
  with pytest.raises(UserError, match=message):
    tr.build(*args)


def test_config_rejects_text_transition_on_images():
  with pytest.raises(UserError, match="only applies to text data"):
    upscale_config((8, 8, 3), 256, 4, "text8")


@pytest.fixture(scope="module", params=["data", "direct"])
def tiny_upscale(request):
  """An untrained Upscale-2 model over K = 8 (3 stages) and D = 2 positions."""
  config = ModelConfig("x", "image", [2, 1, 1], 8, "unet",
                       dict(channels=8, num_res_blocks=0), model_type="upscale",
                       branching=2, parametrization=request.param)
  model = models.build(config)
  model.loss_tracker.update(tf.range(6), tf.constant([3.0, 2.0, 1.0, 1.0, 0.5, 0.2]))
  return model


def test_upscale_likelihood_is_a_distribution(tiny_upscale):
  """sum_x p(x) = 1 over all 64 datapoints, sequentially and in parallel."""
  scorer = servable.Servable(tiny_upscale)
  x = tf.constant(np.stack(np.meshgrid(np.arange(8), np.arange(8)), -1).reshape(64, 2, 1, 1),
                  tf.int32)
  for budget in (2, 1):
    bits = scorer.log_prob(x=x, budget=tf.constant(budget))["bits_per_dim"].numpy() * 2
    assert np.sum(2.0**-bits) == pytest.approx(1.0, abs=1e-4)


def test_upscale_servable_signatures(tiny_upscale):
  scorer = servable.Servable(tiny_upscale)
  assert set(scorer.signatures()) == {"serving_default", "log_prob", "elbo", "step_loss",
                                      "sample", "infill", "policy", "loss_components"}
  assert scorer.policy(budget=tf.constant(1)).numpy().tolist() == [[0]] * 3
  samples = scorer.sample(num=tf.constant(200), budget=tf.constant(1),
                          seed=tf.constant(0))["samples"].numpy()
  assert samples.min() >= 0 and samples.max() < 8
  x = tf.constant([[[[5]], [[3]]]] * 4)
  known = tf.constant([[[[1]], [[0]]]] * 4)
  out = scorer.infill(x=x, known=known, budget=tf.constant(1), seed=tf.constant(1))
  np.testing.assert_array_equal(out["samples"][:, 0], x[:, 0])
  # The conditional of the one unknown value sums to one over its 8 values.
  candidates = tf.constant([[[[5]], [[v]]] for v in range(8)])
  bits = scorer.infill(x=candidates, known=tf.ones_like(candidates) * known[:1],
                       budget=tf.constant(1), seed=tf.constant(1))["conditional_bits"]
  assert np.sum(2.0**-bits.numpy()) == pytest.approx(1.0, abs=1e-4)
  elbo = scorer.elbo(x=x, policy=tf.constant([[0, 1]] * 3), seed=tf.constant(0))
  assert np.all(elbo["elbo_bpd"].numpy() <= 0)
  assert scorer.loss_components()["loss_components"].shape == [6]

