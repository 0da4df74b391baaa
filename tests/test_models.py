"""The bidirectional head and the NEIMS network."""

from __future__ import annotations

import torch

from matchms_neims.models import NeimsMLP
from matchms_neims.models.heads import BidirectionalHead, mass_mask, reverse_to_mz
from matchms_neims.models.sparse_linear import SparseInputLinear


def test_reverse_to_mz_anchors_loss_zero_at_the_molecular_mass():
    reverse = torch.zeros(2, 11)
    reverse[:, 0] = 1.0  # loss 0 -> M+
    reverse[:, 3] = 0.5  # loss 3 -> M-3
    out = reverse_to_mz(reverse, torch.tensor([7, 10]))
    assert out[0].nonzero().flatten().tolist() == [4, 7]
    assert out[1].nonzero().flatten().tolist() == [7, 10]
    assert out[0, 7] == 1.0 and out[0, 4] == 0.5


def test_head_puts_intensity_at_the_molecular_ion_and_nothing_above_m_plus_margin():
    head = BidirectionalHead(in_features=4, max_mz=100, isotope_margin=5).eval()
    with torch.no_grad():
        for layer in (head.forward_layer, head.reverse_layer, head.gate_layer):
            layer.weight.zero_()
            layer.bias.zero_()
        head.reverse_layer.bias[0] = 3.0  # neutral loss 0
        head.gate_layer.bias.fill_(-20.0)  # gate -> reverse view everywhere
        spectra = head(torch.randn(3, 4), torch.tensor([46, 78, 92]))
    assert spectra.argmax(dim=1).tolist() == [46, 78, 92]
    # a forward view with intensity everywhere is cut above M + 5
    with torch.no_grad():
        head.forward_layer.bias.fill_(1.0)
        head.gate_layer.bias.fill_(20.0)
        spectra = head(torch.randn(1, 4), torch.tensor([46]))
    assert spectra[0, 51] > 0 and spectra[0, 52:].abs().sum() == 0


def test_head_is_rectified_in_eval_mode_only():
    head = BidirectionalHead(in_features=4, max_mz=50)
    with torch.no_grad():
        head.forward_layer.bias.fill_(-1.0)
        head.gate_layer.bias.fill_(20.0)
    x, mass = torch.randn(2, 4), torch.tensor([40, 45])
    assert (head.train()(x, mass) < 0).any()
    assert (head.eval()(x, mass) >= 0).all()


def test_mass_mask():
    mask = mass_mask(torch.tensor([3]), n_bins=10, isotope_margin=2)
    assert mask[0].tolist() == [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]


def test_neims_mlp_shapes_and_gradients():
    model = NeimsMLP(input_size=64, hidden_size=16, n_blocks=2, max_mz=200)
    features = torch.randint(0, 4, (5, 64)).float()
    out = model(features, torch.tensor([50, 60, 70, 80, 190]))
    assert out.shape == (5, 201)
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_sparse_input_linear_equals_dense_and_keeps_the_state_dict():
    torch.manual_seed(0)
    layer = SparseInputLinear(300, 20)
    dense = torch.nn.Linear(300, 20)
    dense.load_state_dict(layer.state_dict())  # same parameter names
    x = torch.zeros(5, 300)
    x[0, [3, 17, 250]] = torch.tensor([1.0, 2.0, 0.5])
    x[2, 299] = 4.0  # row 1, 3 and 4 empty
    with torch.no_grad():
        sparse_out = layer(x)
        torch.testing.assert_close(sparse_out, dense(x), rtol=0, atol=1e-6)
        assert layer._weight_t is not None  # the sparse path ran
        layer.weight.mul_(2)  # a changed weight is seen
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), atol=1e-6,
                                   rtol=0)
        full = torch.rand(4, 300)  # dense input: the dense path
        torch.testing.assert_close(layer(full), torch.nn.functional.linear(full, layer.weight, layer.bias))
        assert layer(torch.zeros(0, 300)).shape == (0, 20)
    x.requires_grad_(True)
    layer(x).sum().backward()  # training: the dense path, with gradients
    assert layer.weight.grad is not None and x.grad is not None


def test_models_declare_what_they_support():
    from matchms_neims.models import StudentMoE
    from matchms_neims.models.teacher import TeacherGNN

    plain = NeimsMLP(input_size=64, hidden_size=16, n_blocks=1, max_mz=100)
    formula = NeimsMLP(input_size=64, hidden_size=16, n_blocks=1, max_mz=100, head="formula")
    student = StudentMoE(n_bits=32, n_count_bits=32, width=16, expert_inner=16, n_experts=2, top_k=1,
                         blocks_per_expert=1, gate_hidden=(8,), head_hidden=(16,), max_mz=100)
    teacher = TeacherGNN(atom_embedding_dim=8, bond_embedding_dim=8, hidden_size=8, n_layers=1, attention_hidden=8,
                         ecfp_size=32, ecfp_hidden=[16], fusion_hidden=[16], max_mz=100)
    assert [m.supports_uncertainty for m in (plain, formula, student, teacher)] == [True, True, False, True]
    assert [m.has_expert_weights for m in (plain, formula, student, teacher)] == [False, False, True, False]
    assert plain.formula_head is None and formula.formula_head is formula.head
    assert plain.export_obstacle is None and student.export_obstacle is None
    assert "formula head" in formula.export_obstacle and "molecular graphs" in teacher.export_obstacle
    spectrum, expert_weights = student.eval().deterministic_outputs(torch.rand(3, 64), torch.tensor([50, 60, 70]))
    assert spectrum.shape == (3, 101) and expert_weights.shape == (3, 2)
    (alone,) = plain.eval().deterministic_outputs(torch.rand(3, 64), torch.tensor([50, 60, 70]))
    assert alone.shape == (3, 101)
