"""The model configuration: everything needed to rebuild a trained model.

It is stored as JSON next to checkpoints and inside exports, so that
`evaluate`, `sample` and `export` rebuild exactly the trained architecture.
"""
import dataclasses
import json
import math
from typing import Optional

from tf_ardm import transitions
from tf_ardm.errors import UserError

# Training objectives: the OA-ARDM (spec §3) and T-step absorbing diffusion.
OBJECTIVES = ("ardm", "absorbing")
# Output distributions over the K classes: a softmax of K logits, or a
# discretized logistic mixture (networks/logistic_mixture.py; images only).
OUTPUT_DISTRIBUTIONS = ("categorical", "logistic_mixture")


@dataclasses.dataclass
class ModelConfig:
  """Data description, network choice and objective settings.

  Attributes:
    dataset: registry name of the training data.
    kind: 'image' or 'text'.
    shape: data shape without batch, e.g. [8, 8, 1] or [250, 1].
    num_classes: K, data values lie in [0, K).
    network: 'unet' or 'transformer'.
    network_kwargs: keyword arguments of the network constructor.
    ce_weight: weight of the cross-entropy auxiliary term.
    sigma_seed: seed of the fixed order used for exact likelihoods and coding.
    model_type: 'oa' (order-agnostic ARDM) or 'upscale' (spec §6).
    branching: Upscale branching factor b (digits per stage).
    transition: Upscale transition: 'zero_lsb', 'augment' or 'text8'.
    parametrization: Upscale output: 'data' (K logits pushed down to the
      stage) or 'direct' (S*b digit logits).
    objective: the training objective, 'ardm' or 'absorbing'.
    diffusion_steps: T of the absorbing objective; None for 'ardm'.
    output_distribution: 'categorical' (K logits) or 'logistic_mixture'
      (an image model's K classes from num_mixtures discretized logistics).
    num_mixtures: M of the logistic mixture; 0 for 'categorical'.
  """
  dataset: str
  kind: str
  shape: list
  num_classes: int
  network: str
  network_kwargs: dict
  ce_weight: float = 0.0
  sigma_seed: int = 0
  model_type: str = "oa"
  branching: int = 0
  transition: str = "zero_lsb"
  parametrization: str = "data"
  objective: str = "ardm"
  diffusion_steps: Optional[int] = None
  output_distribution: str = "categorical"
  num_mixtures: int = 0

  def __post_init__(self):
    self._check_output_distribution()
    if self.model_type not in ("oa", "upscale"):
      raise UserError(f"unknown model type {self.model_type!r}; choose oa or upscale")
    if self.objective not in OBJECTIVES:
      raise UserError(f"unknown objective {self.objective!r}; "
                      f"choose one of {', '.join(OBJECTIVES)}")
    if self.objective == "absorbing":
      check_diffusion_steps(self.diffusion_steps)
      if self.model_type != "oa":
        raise UserError("the absorbing objective needs an order-agnostic model "
                        f"(model_type 'oa'), not {self.model_type!r}")
    elif self.diffusion_steps is not None:
      raise UserError("diffusion_steps applies to the absorbing objective only, "
                      f"not to {self.objective!r}")
    self.upscale_transition = None
    if self.model_type == "upscale":
      self.upscale_transition = transitions.build(
          self.transition, self.num_classes, self.branching, self.kind,
          self.parametrization)

  def _check_output_distribution(self):
    if self.output_distribution not in OUTPUT_DISTRIBUTIONS:
      raise UserError(f"unknown output distribution {self.output_distribution!r}; "
                      f"choose one of {', '.join(OUTPUT_DISTRIBUTIONS)}")
    if self.output_distribution == "categorical":
      if self.num_mixtures:
        raise UserError("num_mixtures applies to the logistic_mixture output only")
      return
    if self.kind != "image":
      raise UserError("the logistic_mixture output is for ordered values (images), "
                      f"not {self.kind!r} data")
    if not isinstance(self.num_mixtures, int) or self.num_mixtures < 1:
      raise UserError(f"the logistic_mixture output needs num_mixtures >= 1, "
                      f"got {self.num_mixtures!r}")
    if self.model_type == "upscale" and self.parametrization == "direct":
      raise UserError("the logistic_mixture output is a distribution over the K data "
                      "values: use the Upscale data parametrization, not 'direct'")

  @property
  def num_steps(self):
    """D, the number of generation steps (one per data dimension)."""
    return int(math.prod(self.shape))

  @property
  def num_stages(self):
    """S: 1 for OA, the transition's stage count for Upscale."""
    return 1 if self.upscale_transition is None else self.upscale_transition.num_stages

  @property
  def total_steps(self):
    """S * D, the steps of all stages (the loss tracker's length)."""
    return self.num_stages * self.num_steps

  @property
  def absorbing(self):
    """Absorbing state (spec §3.3): K//2 for OA images, the new class K for OA
    text, the transition's absorbing state for Upscale."""
    if self.upscale_transition is not None:
      return self.upscale_transition.absorbing
    return self.num_classes // 2 if self.kind == "image" else self.num_classes

  @property
  def input_classes(self):
    """Network input vocabulary: K' for Upscale, K+1 if the absorbing state is
    a new class."""
    if self.upscale_transition is not None:
      return self.upscale_transition.input_classes
    return self.num_classes + int(self.absorbing == self.num_classes)

  @property
  def output_classes(self):
    """Logits per dimension: K, or S*b for the direct parametrisation."""
    if self.upscale_transition is not None and self.parametrization == "direct":
      return self.num_stages * self.branching
    return self.num_classes

  @property
  def network_outputs(self):
    """What the network body outputs per dimension: 3M mixture parameters
    for the logistic mixture, else `output_classes` logits."""
    if self.output_distribution == "logistic_mixture":
      return 3 * self.num_mixtures
    return self.output_classes

  def to_json(self):
    """The config as JSON. A categorical model's leaves out the output
    fields, so that it stays the JSON (and the codec fingerprint) it had
    before they existed."""
    fields = dataclasses.asdict(self)
    if self.output_distribution == "categorical":
      del fields["output_distribution"], fields["num_mixtures"]
    return json.dumps(fields, indent=2, sort_keys=True)

  @classmethod
  def from_json(cls, text):
    try:
      return cls(**json.loads(text))
    except (TypeError, ValueError) as e:
      raise UserError(f"invalid model config: {e}") from e


def check_diffusion_steps(steps):
  """Raises UserError unless `steps` (T of absorbing diffusion) is an int >= 1."""
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise UserError(f"the number of diffusion steps T must be an integer >= 1, "
                    f"got {steps!r}")
