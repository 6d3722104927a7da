"""preprocessing.precision: the command lines' 'auto', and the warning for emulated bfloat16."""

import pytest

import preprocessing.precision as precision
from preprocessing.errors import NucleiError


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: native)
    assert precision.resolve_precision("auto") == ("bfloat16" if native else "float32")
    # an explicit choice is kept whatever the CPU
    assert precision.resolve_precision("bfloat16") == "bfloat16"
    assert precision.resolve_precision("float32") == "float32"


def test_unknown_precision_names_the_choices():
    with pytest.raises(NucleiError, match="float16.*float32, bfloat16"):
        precision.resolve_precision("float16")


def test_warning_only_for_bfloat16_on_a_cpu_that_emulates_it(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: False)
    warning = precision.emulated_bfloat16_warning("bfloat16")
    assert warning.startswith("warning:") and "--precision float32" in warning
    assert precision.emulated_bfloat16_warning("float32") is None
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: True)
    assert precision.emulated_bfloat16_warning("bfloat16") is None


def test_cpu_flags_are_read_from_cpuinfo(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(precision, "Path", lambda _: cpuinfo)
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
    assert precision.cpu_has_bfloat16() is False
    cpuinfo.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    assert precision.cpu_has_bfloat16() is True
    cpuinfo.unlink()
    assert precision.cpu_has_bfloat16() is False  # cannot tell: not native
