"""The 'auto' training settings: precision and XLA for the machine."""
import dataclasses

import pytest

from tf_ardm.errors import UserError
from tf_ardm.training import config as config_lib
from tf_ardm.training import hardware


@pytest.mark.parametrize("gpus,flags,want", [
    ([], {"avx2", "amx_bf16", "amx_tile"}, "bfloat16"),
    ([], {"avx512f", "avx512_bf16"}, "bfloat16"),
    ([], {"avx2", "avx512f", "fma"}, "float32"),
    ([], set(), "float32"),
    ([(8, 0)], set(), "bfloat16"),
    ([(9, 0), (8, 6)], set(), "bfloat16"),
    ([(7, 5)], {"amx_bf16"}, "float32"),  # The GPU trains, and has no bfloat16 units.
    ([(8, 0), (7, 0)], set(), "float32"),
])
def test_auto_precision_is_bfloat16_only_where_the_devices_compute_it(gpus, flags, want):
  assert hardware.auto_precision(gpus=gpus, flags=flags) == want


def test_auto_jit_compile_is_xla_on_gpu_only():
  assert hardware.auto_jit_compile(gpus=[(8, 0)]) is True
  assert hardware.auto_jit_compile(gpus=[]) is False


def test_cpu_flags_reads_the_flags_line(tmp_path):
  info = tmp_path / "cpuinfo"
  info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse avx512_bf16\n")
  assert hardware.cpu_flags(str(info)) == {"fpu", "sse", "avx512_bf16"}
  assert hardware.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_resolve_makes_auto_concrete_and_keeps_explicit_settings(monkeypatch):
  monkeypatch.setattr(hardware, "gpu_capabilities", lambda: [])
  monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"amx_bf16"}))
  auto = config_lib.TrainConfig(precision="auto", jit_compile=None)
  assert (hardware.resolve(auto).precision, hardware.resolve(auto).jit_compile) == (
      "bfloat16", False)
  explicit = dataclasses.replace(auto, precision="float16", jit_compile=True)
  assert hardware.resolve(explicit) == explicit
  with pytest.raises(UserError, match="unknown precision 'int8'.*or auto"):
    config_lib.TrainConfig(precision="int8")
