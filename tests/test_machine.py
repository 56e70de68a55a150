"""The numerical fingerprint: what it records of this machine, how two are told apart, numpy's AVX2 cap."""

from __future__ import annotations

from quest.tracking.machine import (
    NUMPY_ABOVE_AVX2,
    differences,
    fingerprint_id,
    numerical_fingerprint,
    numpy_at_most_avx2,
    summary,
)

AVX2_FLAGS = {"sse4_2", "avx", "avx2", "fma", "f16c"}
ZEN4_FLAGS = AVX2_FLAGS | NUMPY_ABOVE_AVX2["X86_V4"] | NUMPY_ABOVE_AVX2["AVX512_ICL"]


def test_the_fingerprint_records_what_decides_the_bits():
    found = numerical_fingerprint()
    assert set(found) == {"cpu", "numpy_simd", "blas", "threads", "env", "gpus", "libc", "versions"}
    assert set(found["cpu"]) == {"vendor", "family", "model", "stepping", "name", "vector"}
    assert found["blas"] and {"library", "version", "kernel", "threads"} <= set(found["blas"][0])
    assert found["versions"]["numpy"] and found["versions"]["jax"]
    assert found["threads"]["usable"] >= 1
    assert fingerprint_id(found) == fingerprint_id(dict(found)) and len(fingerprint_id(found)) == 12


def test_two_fingerprints_differ_in_one_phrase_each():
    avx2 = {"cpu": {"model": "1", "vector": ["avx", "avx2"]}, "blas": [{"kernel": "Haswell"}], "env": {}}
    avx512 = {"cpu": {"model": "17", "vector": ["avx", "avx2", "avx512f"]}, "blas": [{"kernel": "SkylakeX"}]}
    avx512["env"] = {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}
    assert differences(avx2, avx512) == [
        "blas[0].kernel Haswell -> SkylakeX",
        "cpu.model 1 -> 17",
        "cpu.vector +avx512f",
        "env.XLA_FLAGS unset -> --xla_cpu_max_isa=AVX2",
    ]
    assert differences(avx2, avx2) == []
    assert differences(None, avx2) == ["the committed results record no numerical fingerprint"]


def test_the_summary_reads_as_a_machine():
    numerics = {
        "cpu": {"vendor": "AuthenticAMD", "family": "25", "model": "17", "stepping": "1", "name": "AMD EPYC"},
        "blas": [{"kernel": "SkylakeX"}, {"kernel": "SkylakeX"}],
        "gpus": [{"name": "NVIDIA H100", "driver": "550.54.15"}],
    }
    numerics["cpu"]["vector"] = ["avx2", "avx512f"]
    assert summary(numerics) == (
        "AuthenticAMD family 25 model 17 stepping 1 (AMD EPYC), AVX-512, BLAS SkylakeX, "
        "GPU NVIDIA H100 (driver 550.54.15)"
    )


def test_numpy_is_capped_at_avx2_only_where_there_is_more_and_nobody_chose():
    environ: dict[str, str] = {}
    assert numpy_at_most_avx2(environ, ZEN4_FLAGS) == "X86_V4 AVX512_ICL"  # no avx512_fp16: SPR is not named
    assert environ == {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL"}
    assert numpy_at_most_avx2(environ := {}, AVX2_FLAGS) is None and environ == {}
    chosen = {"NPY_DISABLE_CPU_FEATURES": "AVX512_SPR"}
    assert numpy_at_most_avx2(chosen, ZEN4_FLAGS) is None and chosen == {"NPY_DISABLE_CPU_FEATURES": "AVX512_SPR"}
