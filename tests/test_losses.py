"""The loss definitions, pinned against hand-computed values: weights only mean something with them."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from stylepipe.core.loss_fns import content_loss, gram, style_loss, tv_loss
from stylepipe.extend.terms import ContentLoss, ContentParams, StyleLoss, StyleParams, TotalVariation, TVParams


def test_gram_is_normalised_by_channels_and_positions():
    # F: C=2 channels, H=1, W=2 → F Fᵀ = [[1·1+2·2, 1·3+2·4], [.., 3·3+4·4]] = [[5, 11], [11, 25]]; / (C·H·W = 4)
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    expected = torch.tensor([[[1.25, 2.75], [2.75, 6.25]]])
    assert torch.allclose(gram(features), expected)


def test_gram_is_resolution_independent():
    features = torch.rand(1, 8, 5, 7)
    repeated = features.repeat(1, 1, 3, 2)  # the same texture over six times the area
    assert torch.allclose(gram(repeated), gram(features), atol=1e-6)


def test_gram_and_its_gradient_are_the_same_in_either_memory_layout():
    # Channels-last features (bf16 on the CPU, CUDA) take a copy-free path with a one-product backward.
    torch.manual_seed(0)
    features = torch.rand(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram, (features,))
    assert torch.autograd.gradcheck(lambda f: gram(f.contiguous(memory_format=torch.channels_last)), (features,))
    nchw = features.detach().float()
    last = nchw.contiguous(memory_format=torch.channels_last)
    assert not last.is_contiguous()
    assert torch.allclose(gram(last), gram(nchw), rtol=1e-6)
    flat = nchw.reshape(2, 4, 15)
    assert torch.allclose(gram(nchw), flat @ flat.transpose(1, 2) / (4 * 15), rtol=1e-6)


def test_content_loss_is_weighted_mean_of_feature_mse():
    ones = {"a": torch.zeros(1, 1, 2, 2), "b": torch.zeros(1, 2, 1, 1)}
    targets = {"a": torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), "b": torch.tensor([[[[2.0]], [[0.0]]]])}
    # MSE a = (1+4+9+16)/4 = 7.5 ; MSE b = (4+0)/2 = 2 ; weights 1 and 3 → (7.5 + 6) / 4 = 3.375
    value = content_loss(ones, targets, {"a": 1.0, "b": 3.0})
    assert value.shape == (1,)
    assert value.item() == pytest.approx(3.375)


def test_style_loss_compares_gram_with_target():
    features = {"l": torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])}
    target = {"l": torch.zeros(2, 2)}
    # Gram entries 1.25, 2.75, 2.75, 6.25 → ¼ · sum of squares = (1.5625 + 7.5625·2 + 39.0625) / 4 = 13.9375
    assert style_loss(features, target, {"l": 1.0}).item() == pytest.approx(13.9375)
    assert style_loss(features, {"l": gram(features["l"])[0]}, {"l": 1.0}).item() == pytest.approx(0.0)


def test_style_loss_is_the_papers_summed_error_not_a_mean_over_entries():
    # C=3 channels, H·W=2 positions. F = [[1, 2], [0, 1], [2, 0]] → F Fᵀ = [[5, 2, 2], [2, 1, 0], [2, 0, 4]].
    # Paper: E = 1/(4 N² M²) Σ (F Fᵀ − A)², N=3, M=2, A=0 → Σ = 25+4+4+4+1+0+4+0+16 = 58 → 58 / (4·9·4) = 0.402777…
    # (a mean over the 9 Gram entries would be 4/9 of this: 0.179)
    features = {"l": torch.tensor([[[[1.0, 2.0]], [[0.0, 1.0]], [[2.0, 0.0]]]])}
    value = style_loss(features, {"l": torch.zeros(3, 3)}, {"l": 1.0}).item()
    assert value == pytest.approx(58 / 144)


def test_style_loss_matches_the_paper_formula_on_real_sizes():
    torch.manual_seed(0)
    f, a = torch.rand(1, 16, 6, 5), torch.rand(16, 16)
    n, m = 16, 30
    raw = f.reshape(16, 30)
    paper = ((raw @ raw.T - a * n * m) ** 2).sum() / (4 * n**2 * m**2)
    assert style_loss({"l": f}, {"l": a}, {"l": 1.0}).item() == pytest.approx(paper.item(), rel=1e-5)


def test_tv_loss_is_mean_squared_neighbour_difference():
    image = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).expand(1, 3, 2, 2)
    # vertical differences 2, 2 → mean 4 ; horizontal 1, 1 → mean 1
    assert tv_loss(image).item() == pytest.approx(5.0)
    assert tv_loss(torch.full((2, 3, 4, 4), 0.3)).tolist() == [0.0, 0.0]


def test_losses_are_per_image_in_a_batch():
    torch.manual_seed(0)
    features = {"l": torch.rand(3, 4, 5, 5)}
    content = {"l": torch.rand(3, 4, 5, 5)}
    style = {"l": torch.rand(4, 4)}
    batched_c = content_loss(features, content, {"l": 1.0})
    batched_s = style_loss(features, style, {"l": 1.0})
    for i in range(3):
        one = {"l": features["l"][i : i + 1]}
        assert batched_c[i].item() == pytest.approx(content_loss(one, {"l": content["l"][i : i + 1]}, {"l": 1.0}).item())
        assert batched_s[i].item() == pytest.approx(style_loss(one, style, {"l": 1.0}).item())


def test_terms_default_to_the_paper_layers_and_weights():
    content, style, tv = ContentLoss(), StyleLoss(), TotalVariation()
    assert list(content.layers) == ["relu4_2"]
    assert list(style.layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert (content.side, style.side, tv.side) == ("content", "style", "image")
    assert tv.weight == 10.0 and content.weight == 1.0 and style.weight == 200.0


def test_style_term_layer_weights_scale_the_mean():
    features = {"relu1_1": torch.ones(1, 2, 2, 2), "relu2_1": torch.zeros(1, 2, 2, 2)}
    targets = {"relu1_1": torch.zeros(2, 2), "relu2_1": torch.zeros(2, 2)}
    term = StyleLoss(StyleParams(layers=["relu1_1", "relu2_1"], layer_weights={"relu1_1": 3.0}))
    # gram(ones) = 4/8 = 0.5 everywhere → MSE 0.25 at relu1_1, 0 at relu2_1; weighted mean (3·0.25 + 0) / 4
    assert term.loss(None, features, {}, targets).item() == pytest.approx(0.1875)


def test_unknown_layer_is_a_validation_error():
    with pytest.raises(ValidationError, match="relu9_9"):
        StyleParams(layers=["relu1_1", "relu9_9"])
    with pytest.raises(ValidationError):
        ContentParams(layers=[])
    with pytest.raises(ValidationError):
        TVParams(weight=-1)


def test_fingerprint_tracks_what_changes_style_targets():
    base = StyleLoss(StyleParams())
    assert base.fingerprint() == StyleLoss(StyleParams(weight=1.0)).fingerprint()
    assert base.fingerprint() == StyleLoss(StyleParams(layer_weights={"relu1_1": 2})).fingerprint()
    assert base.fingerprint() != StyleLoss(StyleParams(layers=["relu1_1"])).fingerprint()
