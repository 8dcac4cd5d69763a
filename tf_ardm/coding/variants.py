"""The integer network variants of a codec export.

A codec export traces its integer network four ways: with or without XLA
(`use_xla`), and with its 3x3 convolutions as conv kernels, exact on CPU, or
as im2col matmuls, exact on every device (`direct_conv`;
tf_ardm.networks.fixed_point.conv3x3). `Codec.network_functions` lists the four in the
order that `index` gives, and the codec's functions pick one with a
`tf.switch_case` on that index. tf_ardm.coding.coder pins the switch to one
branch when it loads an export, so this module imports nothing heavy.
"""


def index(use_xla, direct_conv):
  """The variant's index in Codec.network_functions and the switch's branch.

  Args:
    use_xla: 0 or 1 (a Python int or an int32 tensor).
    direct_conv: 0 or 1, of the same kind.
  Returns:
    2 * use_xla + direct_conv, in 0..3.
  """
  return 2 * use_xla + direct_conv
