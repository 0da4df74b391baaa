"""The teacher network on tiny graphs: shapes, masks, eval-mode determinism and MC-dropout uncertainty."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from matchms_neims.chemistry import parse_smiles
from matchms_neims.featurize import Featurizer, ecfp_bits
from matchms_neims.models.teacher import TeacherGNN

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
SMALL = dict(atom_embedding_dim=16, bond_embedding_dim=8, hidden_size=32, n_layers=3, attention_hidden=16,
             ecfp_size=256, ecfp_hidden=(64, 32), fusion_hidden=(64, 32), max_mz=200)


@pytest.fixture
def inputs():
    featurizer = Featurizer(kind="graph", max_mz=200)
    molecules = [featurizer(smi) for smi in SMILES]
    graph = Batch.from_data_list([m.features for m in molecules])
    ecfp = torch.stack([torch.from_numpy(ecfp_bits(parse_smiles(s), 256)) for s in SMILES])
    mass = torch.tensor([m.info.nominal_mass for m in molecules])
    return graph, ecfp, mass


def test_shapes_and_mass_mask(inputs):
    torch.manual_seed(0)
    graph, ecfp, mass = inputs
    model = TeacherGNN(**SMALL).eval()
    out = model.forward_with_details(graph, ecfp, mass)
    assert out.spectrum.shape == (3, 201)
    assert out.bond_break_probability.shape == (graph.edge_index.shape[1],)
    assert ((out.bond_break_probability > 0) & (out.bond_break_probability < 1)).all()
    assert out.ecfp_embedding.shape == (3, 32) and out.graph_embedding.shape == (3, 96)
    assert model.distillation_embedding_size == 32
    torch.testing.assert_close(model.distillation_embedding(graph, ecfp, mass), out.ecfp_embedding)
    for row, m in zip(out.spectrum, mass.tolist()):
        assert row[m + 6 :].abs().sum() == 0 and (row >= 0).all()


def test_default_sizes_follow_the_design():
    model = TeacherGNN()
    assert len(model.layers) == 8 and model.layers[0].conv.nn[0].in_features == 256
    assert model.fusion[0].in_features == 1280 and model.ecfp_branch[-3].out_features == 512
    assert model.layers[0].drop_edge == 0.2 and model.layers[0].dropout.p == 0.3


def test_eval_mode_is_deterministic_and_training_mode_is_not(inputs):
    torch.manual_seed(0)
    graph, ecfp, mass = inputs
    model = TeacherGNN(**SMALL)
    model.eval()
    torch.testing.assert_close(model(graph, ecfp, mass), model(graph, ecfp, mass))
    model.train()
    assert not torch.equal(model(graph, ecfp, mass), model(graph, ecfp, mass))  # dropout + DropEdge


def test_bond_attention_shapes_the_prediction(inputs):
    torch.manual_seed(0)
    graph, ecfp, mass = inputs
    model = TeacherGNN(**SMALL).eval()
    before = model(graph, ecfp, mass)
    with torch.no_grad():
        model.bond_attention.mlp[-1].bias.add_(5.0)
    assert not torch.allclose(before, model(graph, ecfp, mass))


def test_mc_dropout_uncertainty(inputs):
    torch.manual_seed(0)
    graph, ecfp, mass = inputs
    model = TeacherGNN(**SMALL)
    model.train()
    model(graph, ecfp, mass)  # populate BatchNorm running statistics
    model.eval()
    stats = [layer.norm.running_mean.clone() for layer in model.layers]
    mean_a, std_a = model.predict_with_uncertainty(graph, ecfp, mass, n_samples=8, seed=1)
    mean_b, std_b = model.predict_with_uncertainty(graph, ecfp, mass, n_samples=8, seed=1)
    torch.testing.assert_close(mean_a, mean_b)
    assert std_a.max() > 0 and (std_a >= 0).all()
    assert not model.training and not any(m.training for m in model.modules())
    for layer, saved in zip(model.layers, stats):
        torch.testing.assert_close(layer.norm.running_mean, saved)  # BatchNorm untouched


def test_masked_bond_predictions_are_symmetric_and_use_the_mask(inputs):
    from matchms_neims_training.distillation.losses import sample_bond_mask

    torch.manual_seed(0)
    graph, _, _ = inputs
    model = TeacherGNN(**SMALL).eval()
    mask = sample_bond_mask(graph.edge_index, 0.5, torch.Generator().manual_seed(0))
    prediction = model.masked_bond_predictions(graph, mask)
    n_masked = int(mask.sum())
    assert prediction.type_logits.shape == (n_masked, 22) and prediction.length.shape == (n_masked,)
    # both directions of a bond are masked together and get the same prediction
    masked_edges = graph.edge_index[:, mask].t().tolist()
    for (i, j), logits in zip(masked_edges, prediction.type_logits):
        partner = masked_edges.index([j, i])
        torch.testing.assert_close(logits, prediction.type_logits[partner])
    # the mask changes what the encoder sees
    h_masked, _ = model.encode_atoms(graph, mask)
    h_plain, _ = model.encode_atoms(graph)
    assert not torch.allclose(h_masked, h_plain)


def test_count_ecfp_input_is_log_transformed(inputs):
    torch.manual_seed(0)
    graph, ecfp, mass = inputs
    model = TeacherGNN(**SMALL, ecfp_transform="log1p").eval()
    counts = ecfp * 3
    expected = model.ecfp_branch(torch.log1p(counts))
    torch.testing.assert_close(model.forward_with_details(graph, counts, mass).ecfp_embedding, expected)
    with pytest.raises(ValueError, match="ecfp_transform"):
        TeacherGNN(**SMALL, ecfp_transform="sqrt")


def test_trunk_fusion_initialised_from_a_baseline_reproduces_it(inputs, tmp_path):
    from matchms_neims.checkpoint import save_model
    from matchms_neims.models.neims import NeimsMLP
    from matchms_neims_training.running.runner import initialise_from

    torch.manual_seed(0)
    graph, ecfp, mass = inputs
    baseline_config = dict(input_size=256, hidden_size=48, n_blocks=2, bottleneck_factor=0.25, max_mz=200)
    baseline = NeimsMLP(**baseline_config).eval()
    path = save_model(tmp_path / "baseline.pt", baseline, baseline_config,
                      Featurizer("neims_count_ecfp", max_mz=200, n_bits=256))
    sizes = dict(SMALL, fusion_hidden=(48,), fusion_blocks=2, fusion_bottleneck_factor=0.25)
    teacher = TeacherGNN(**sizes, ecfp_transform="log1p", fusion_mode="trunk", pair_norm=False).eval()
    assert initialise_from(teacher, str(path)) == len(baseline.state_dict())
    counts = ecfp * 3  # any count vector
    with torch.no_grad():
        torch.testing.assert_close(teacher(graph, counts, mass), baseline(counts, mass))
        assert teacher.forward_with_details(graph, counts, mass).ecfp_embedding.shape == (3, 48)
    assert teacher.distillation_embedding_size == 48
    # the zero-initialised graph projection is trained, and then the graph changes the prediction
    teacher.train()
    teacher(graph, counts, mass).sum().backward()
    assert teacher.graph_projection.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="fusion_mode"):
        TeacherGNN(**SMALL, fusion_mode="sum")


def test_concat_fusion_with_residual_blocks_and_without_pair_norm(inputs):
    graph, ecfp, mass = inputs
    model = TeacherGNN(**SMALL, fusion_blocks=2, pair_norm=False).eval()
    assert all(layer.pair_norm is None for layer in model.layers)
    assert model(graph, ecfp, mass).shape == (3, 201)
