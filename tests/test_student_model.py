"""The student mixture of experts on random fingerprints: routing, balancing bias, masks, saving and prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from matchms_neims.checkpoint import load_model, save_model
from matchms_neims.featurize import Featurizer
from matchms_neims.io import iter_records, write_spectra
from matchms_neims.library import build_library
from matchms_neims.models import MODEL_CLASSES
from matchms_neims.models.student import StudentMoE, expert_load
from matchms_neims.predictor import NeimsPredictor

SMALL = dict(n_bits=256, n_count_bits=128, width=32, expert_inner=48, n_experts=4, top_k=2, blocks_per_expert=2,
             gate_hidden=(32, 16), head_hidden=(64, 32), max_mz=200)
BATCH = 24


def random_inputs(batch: int = BATCH, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    bits = (torch.rand(batch, SMALL["n_bits"], generator=generator) < 0.05).float()
    counts = torch.poisson(torch.full((batch, SMALL["n_count_bits"]), 0.3), generator=generator)
    mass = torch.randint(20, 150, (batch,), generator=generator)
    return torch.cat([bits, counts], dim=1), mass


def small_model(seed: int = 0, **overrides) -> StudentMoE:
    torch.manual_seed(seed)
    return StudentMoE(**{**SMALL, **overrides})


def record_expert_inputs(model: StudentMoE) -> dict[int, list[torch.Tensor]]:
    calls: dict[int, list[torch.Tensor]] = {index: [] for index in range(model.n_experts)}
    for index, expert in enumerate(model.experts):
        expert.register_forward_hook(lambda module, args, output, index=index: calls[index].append(args[0].detach()))
    return calls


def test_registered_and_default_size():
    assert MODEL_CLASSES["StudentMoE"] is StudentMoE
    n_parameters = sum(p.numel() for p in StudentMoE().parameters())
    assert 25_000_000 <= n_parameters <= 35_000_000


def test_output_shapes_and_expert_weights():
    fingerprint, mass = random_inputs()
    model = small_model().eval()
    out = model.forward_with_details(fingerprint, mass)
    assert out.spectrum.shape == (BATCH, 201)
    assert out.expert_weights.shape == (BATCH, 4) and out.gate_probabilities.shape == (BATCH, 4)
    assert out.selected_experts.shape == (BATCH, 2) and out.selected_experts.dtype == torch.long
    assert out.hidden.shape == (BATCH, 32)
    torch.testing.assert_close(out.expert_weights.sum(dim=1), torch.ones(BATCH))
    torch.testing.assert_close(out.gate_probabilities.sum(dim=1), torch.ones(BATCH))
    assert ((out.expert_weights > 0).sum(dim=1) == 2).all()
    for weights, selected, probabilities in zip(out.expert_weights, out.selected_experts, out.gate_probabilities):
        assert set(weights.nonzero().flatten().tolist()) == set(selected.tolist())
        torch.testing.assert_close(weights[selected], probabilities[selected] / probabilities[selected].sum())
    torch.testing.assert_close(model(fingerprint, mass), out.spectrum)


def test_only_the_chosen_experts_run_on_their_rows():
    fingerprint, mass = random_inputs()
    model = small_model().eval()
    calls = record_expert_inputs(model)
    out = model.forward_with_details(fingerprint, mass)
    features = model.input_projection(model.transform_input(fingerprint))
    for index in range(model.n_experts):
        rows = (out.selected_experts == index).any(dim=1)
        if not rows.any():
            assert calls[index] == []
            continue
        (received,) = calls[index]
        torch.testing.assert_close(received, features[rows])
    assert sum(len(c[0]) for c in calls.values() if c) == BATCH * model.top_k  # never all experts on all rows

    # with experts 0 and 1 forced for every row, experts 2 and 3 are never called
    model = small_model().eval()
    calls = record_expert_inputs(model)
    model.gate_bias.copy_(torch.tensor([100.0, 100.0, -100.0, -100.0]))
    model.forward_with_details(fingerprint, mass)
    assert calls[2] == [] and calls[3] == []
    assert len(calls[0][0]) == len(calls[1][0]) == BATCH


def test_shared_expert_runs_on_every_row_and_adds_its_residual_update():
    fingerprint, mass = random_inputs()
    model = small_model(shared_experts=1).eval()
    routed_calls = record_expert_inputs(model)
    shared_calls = []
    model.shared_experts[0].register_forward_hook(lambda module, args, output: shared_calls.append(args[0]))
    out = model.forward_with_details(fingerprint, mass)
    assert len(shared_calls) == 1 and len(shared_calls[0]) == BATCH
    assert sum(len(c[0]) for c in routed_calls.values() if c) == BATCH * model.top_k  # routing as before
    with torch.no_grad():
        features = model.input_projection(model.transform_input(fingerprint))
        routed = torch.zeros_like(features)
        for row, (experts, weights) in enumerate(zip(out.selected_experts, out.expert_weights)):
            for index in experts.tolist():
                routed[row] += weights[index] * model.experts[index](features[row : row + 1])[0]
        expected = routed + model.shared_experts[0](features) - features
    torch.testing.assert_close(out.hidden, model.final_norm(expected))
    without = small_model(shared_experts=0)
    assert set(model.state_dict()) - set(without.state_dict()) == {
        key for key in model.state_dict() if key.startswith("shared_experts.")}


def test_relu_activation_and_head_without_mlp():
    fingerprint, mass = random_inputs()
    model = small_model(activation="relu", head_hidden=()).eval()
    assert not any(isinstance(module, torch.nn.GELU) for module in model.modules())
    assert isinstance(model.experts[0][0].layers[2], torch.nn.ReLU) and model.head.forward_layer.in_features == 32
    out = model.forward_with_details(fingerprint, mass)
    assert out.spectrum.shape == (BATCH, 201) and (out.spectrum >= 0).all()
    assert set(model.state_dict()) - set(small_model().state_dict()) <= {
        key for key in model.state_dict() if key.startswith("head.")}  # the GELU model's names, minus its head MLP
    with pytest.raises(ValueError, match="unknown activation"):
        small_model(activation="tanh")


def test_bias_changes_selection_only():
    fingerprint, mass = random_inputs()
    model = small_model().eval()
    probabilities, _, _ = model.route(fingerprint)
    model.gate_bias[3] = 100.0
    biased_probabilities, selected, weights = model.route(fingerprint)
    assert (selected == 3).any(dim=1).all()
    torch.testing.assert_close(biased_probabilities, probabilities)
    chosen = probabilities.gather(1, selected)
    torch.testing.assert_close(weights.gather(1, selected), chosen / chosen.sum(dim=1, keepdim=True))


def test_expert_load():
    selected = torch.tensor([[0, 1], [0, 2], [0, 1]])
    torch.testing.assert_close(expert_load(selected, 4), torch.tensor([0.5, 1 / 3, 1 / 6, 0.0]))
    torch.testing.assert_close(expert_load(torch.zeros(0, 2, dtype=torch.long), 3), torch.zeros(3))


def test_update_gate_bias_balances_a_skewed_router():
    fingerprint, _ = random_inputs(batch=256)
    model = small_model(top_k=1, bias_update_rate=0.02).eval()
    with torch.no_grad():
        model.gate[-1].bias.copy_(torch.tensor([3.0, 0.0, 0.0, 0.0]))  # almost everything to expert 0
    loads = []
    for _ in range(300):
        _, selected, _ = model.route(fingerprint)
        load = expert_load(selected, model.n_experts)
        loads.append(load)
        model.update_gate_bias(load)
    late = torch.stack(loads[-50:])
    assert loads[0].max() > 0.9
    assert late.max(dim=1).values.mean() < 0.7 and (late.mean(dim=0) > 0.1).all()  # every expert gets work
    assert model.gate_bias[0] < 0 and not model.gate_bias.requires_grad
    # the update rule itself: overloaded experts down, underloaded ones up, by bias_update_rate
    model.gate_bias.zero_()
    model.update_gate_bias(torch.tensor([0.7, 0.1, 0.1, 0.1]))
    torch.testing.assert_close(model.gate_bias, torch.tensor([-0.02, 0.02, 0.02, 0.02]))


def test_gradients_reach_the_gate_but_not_the_bias():
    fingerprint, mass = random_inputs()
    model = small_model().train()
    model(fingerprint, mass).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.gate.parameters())
    assert "gate_bias" in dict(model.named_buffers()) and "gate_bias" not in dict(model.named_parameters())


def test_eval_mode_is_deterministic_and_respects_the_mass_mask():
    fingerprint, mass = random_inputs()
    model = small_model()
    model.eval()
    spectrum = model(fingerprint, mass)
    torch.testing.assert_close(spectrum, model(fingerprint, mass))
    assert (spectrum >= 0).all() and spectrum.abs().sum() > 0
    for row, m in zip(spectrum, mass.tolist()):
        assert row[m + 6 :].abs().sum() == 0
    model.train()
    assert not torch.equal(model(fingerprint, mass), model(fingerprint, mass))  # dropout


def test_count_transform_and_argument_checks():
    fingerprint, _ = random_inputs()
    model = small_model()
    transformed = model.transform_input(fingerprint)
    torch.testing.assert_close(transformed[:, :256], fingerprint[:, :256])
    torch.testing.assert_close(transformed[:, 256:], torch.log1p(fingerprint[:, 256:]))
    torch.testing.assert_close(small_model(count_transform="none").transform_input(fingerprint), fingerprint)
    with pytest.raises(ValueError, match="count_transform"):
        small_model(count_transform="sqrt")
    with pytest.raises(ValueError, match="top_k"):
        small_model(top_k=5)


@pytest.fixture
def student_model_path(tmp_path):
    config = dict(SMALL)
    model = small_model(seed=1)
    model.gate_bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    featurizer = Featurizer(kind="student_fingerprint", max_mz=200, n_bits=256, n_count_bits=128)
    return save_model(tmp_path / "student.pt", model, config, featurizer, {"name": "tiny-student", "version": "0.1"})


def test_save_load_round_trip(student_model_path):
    fingerprint, mass = random_inputs()
    loaded = load_model(student_model_path)
    assert loaded.model_class == "StudentMoE" and loaded.featurizer.kind == "student_fingerprint"
    assert not loaded.model.training
    torch.testing.assert_close(loaded.model.gate_bias, torch.tensor([0.1, -0.2, 0.3, 0.0]))
    original = small_model(seed=1).eval()
    original.gate_bias.copy_(loaded.model.gate_bias)
    torch.testing.assert_close(loaded.model(fingerprint, mass), original(fingerprint, mass))


def test_predictor_returns_expert_weights(student_model_path, tmp_path, tiny_predictor):
    predictor = NeimsPredictor(student_model_path)
    assert predictor.supports_expert_weights and not predictor.supports_uncertainty
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "not a smiles"]
    batch = predictor.predict_batch(smiles)
    assert batch.expert_weights.shape == (3, 4) and batch.vectors.shape == (3, 201)
    np.testing.assert_allclose(batch.expert_weights.sum(axis=1), 1.0, rtol=1e-5)
    predictor.batch_size = 2  # the same weights batch by batch
    np.testing.assert_allclose(predictor.predict_batch(smiles).expert_weights, batch.expert_weights, rtol=1e-5)

    spectra = predictor.predict_spectra(smiles)
    assert len(spectra) == 3
    for spectrum, weights in zip(spectra, batch.expert_weights):
        stored = spectrum.get("expert_weights")
        assert isinstance(stored, list) and len(stored) == 4 and sum(w > 0 for w in stored) == 2
        assert stored == [round(float(w), 4) for w in weights]
        assert spectrum.peaks.mz.max() <= spectrum.get("nominal_mass") + 5
    assert tiny_predictor.predict_batch(["CCO"]).expert_weights is None  # the baseline has no experts
    assert tiny_predictor.predict_spectra(["CCO"])[0].get("expert_weights") is None

    for kind in ("msp", "mgf"):
        assert write_spectra(spectra, tmp_path / f"out.{kind}") == 3
        records = list(iter_records(tmp_path / f"out.{kind}"))
        written = [r.metadata.get("expert_weights") for r in records]
        assert written == [",".join(f"{w:.10g}" for w in s.get("expert_weights")) for s in spectra]
        summary = build_library(smiles, tmp_path / f"library.{kind}", predictor=predictor, progress=False)
        assert summary.n_written == 3
        library = [r.metadata.get("expert_weights") for r in iter_records(tmp_path / f"library.{kind}")]
        assert library == written
