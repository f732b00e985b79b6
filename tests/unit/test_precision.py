"""trainer.precision=auto follows the CPU; an explicit precision always wins."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from lightning_talos import precision
from lightning_talos.config.load import compose
from lightning_talos.precision import AutocastEval, precision_record, resolve_precision


def _cpu(monkeypatch: pytest.MonkeyPatch, *, capability: str, flags: list[str]) -> None:
    monkeypatch.setattr(precision, "torch_cpu_capability", lambda: capability)
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)


@pytest.mark.parametrize("flags", [["avx512_bf16"], ["amx_bf16"], ["avx512_bf16", "amx_bf16"]])
def test_native_bf16_cpu_gets_bf16_mixed(monkeypatch: pytest.MonkeyPatch, flags: list[str]) -> None:
    _cpu(monkeypatch, capability="AVX512", flags=flags)
    chosen, reason = resolve_precision("auto", "cpu")
    assert chosen == "bf16-mixed"
    assert flags[0] in reason


def test_avx2_cpu_gets_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    _cpu(monkeypatch, capability="AVX2", flags=[])
    chosen, reason = resolve_precision("auto", "cpu")
    assert chosen == "32-true"
    assert "AVX2" in reason


def test_aten_capped_at_avx2_gets_fp32_despite_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    # ATEN_CPU_CAPABILITY=avx2 on an AVX512-BF16 CPU: ATen runs AVX2 kernels, so no native bf16.
    _cpu(monkeypatch, capability="AVX2", flags=["avx512_bf16"])
    assert resolve_precision("auto", "cpu")[0] == "32-true"


@pytest.mark.parametrize("explicit", ["32-true", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize(("capability", "flags"), [("AVX512", ["avx512_bf16"]), ("AVX2", [])])
def test_explicit_precision_wins(
    monkeypatch: pytest.MonkeyPatch, explicit: str, capability: str, flags: list[str]
) -> None:
    _cpu(monkeypatch, capability=capability, flags=flags)
    assert resolve_precision(explicit, "cpu") == (explicit, "explicit trainer.precision")


def test_cpu_preset_is_auto_and_the_command_line_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    _cpu(monkeypatch, capability="AVX512", flags=["amx_bf16"])
    assert compose(["trainer=cpu"]).trainer.precision == "auto"
    assert precision_record(compose(["trainer=cpu"]).trainer)["precision"] == "bf16-mixed"
    pinned = compose(["trainer=cpu", "trainer.precision=32-true"]).trainer
    assert precision_record(pinned) == {
        "precision": "32-true",
        "precision_reason": "explicit trainer.precision",
    }


def test_a_stage_precision_replaces_the_trainer_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _cpu(monkeypatch, capability="AVX512", flags=["avx512_bf16"])
    trainer = OmegaConf.create({"precision": "auto", "accelerator": "cpu"})
    assert precision_record(trainer, "32-true")["precision"] == "32-true"
    assert precision_record(trainer, None)["precision"] == "bf16-mixed"


def test_record_reads_a_plain_trainer_section(monkeypatch: pytest.MonkeyPatch) -> None:
    _cpu(monkeypatch, capability="AVX2", flags=[])
    record = precision_record(OmegaConf.create({"precision": "auto", "accelerator": "cpu"}))
    assert record["precision"] == "32-true" and record["precision_reason"].startswith("auto:")


def test_cpuinfo_fallback_reads_the_flags_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delattr(precision.torch.cpu, "_is_avx512_bf16_supported", raising=False)
    text = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_tile\n"
    monkeypatch.setattr(precision, "Path", lambda _: _FakePath(text))
    assert precision.cpu_bf16_flags() == ["avx512_bf16"]


class _FakePath:
    def __init__(self, text: str) -> None:
        self.text = text

    def read_text(self) -> str:
        return self.text


class _Classifier(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.head = torch.nn.Linear(4, 3)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def test_the_attacks_query_a_model_at_its_training_precision() -> None:
    model, x = _Classifier().eval(), torch.rand(5, 3, 8, 8)
    with torch.no_grad():
        plain = AutocastEval(model, "32-true")
        assert torch.equal(plain(x), model(x))  # fp32: untouched
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reference = model(x).float()
        mixed = AutocastEval(model, "bf16-mixed")
        out = mixed(x)
        assert out.dtype == torch.float32 and torch.equal(out, reference)
        assert not torch.equal(out, model(x))  # bf16 rounding shows: the wrapper did autocast
        assert torch.equal(mixed.head(mixed.embed(x)), out)  # the path feature extraction takes
