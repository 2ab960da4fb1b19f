import warnings

import pytest
import torch

from tcupgan.models import ConvLSTM, PatchDiscriminator, TCuPGenerator


@pytest.mark.parametrize("bidirectional", [False, True])
def test_batched_input_equals_the_originals_per_step_convolution(bidirectional):
    """Batched: conv(x) for all slices, then conv(h) per step; per step: one conv over cat([x_t, h])."""
    torch.manual_seed(0)
    lstm = ConvLSTM(3, 5, bidirectional=bidirectional, batched_input=True)
    x = torch.randn(2, 3, 6, 9, 11)
    state = (torch.randn(2, 5, 9, 11), torch.randn(2, 5, 9, 11))
    out, (h, c) = lstm(x, state)
    lstm.batched_input = False
    out_step, (h_step, c_step) = lstm(x, state)
    torch.testing.assert_close(out, out_step, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close((h, c), (h_step, c_step), rtol=1e-5, atol=1e-5)
    if not bidirectional:  # the first step written out by hand
        gates = lstm.input_convs[0](x[:, :, 0]) + lstm.hidden_convs[0](state[0])
        i, f, o, g = gates.chunk(4, dim=1)
        c1 = f.sigmoid() * state[1] + i.sigmoid() * g.tanh()
        torch.testing.assert_close(out[:, :, 0], o.sigmoid() * c1.tanh(), rtol=1e-5, atol=1e-5)
    assert out.shape == (2, 5, 6, 9, 11)


def test_a_zero_start_skips_the_hidden_convolution_and_gives_the_same_numbers():
    """No state (or no hidden state) is zeros: the first step's hidden convolution is skipped, exactly."""
    torch.manual_seed(0)
    lstm = ConvLSTM(3, 5)
    x, c0 = torch.randn(2, 3, 4, 9, 11), torch.randn(2, 5, 9, 11)
    zeros = torch.zeros(2, 5, 9, 11)
    for batched in (False, True):
        lstm.batched_input = batched
        torch.testing.assert_close(lstm(x), lstm(x, (zeros, zeros)), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(lstm(x, (None, c0)), lstm(x, (zeros, c0)), rtol=1e-6, atol=1e-6)


def test_the_fused_gate_kernel_equals_the_reference_forward_and_backward():
    """The compiled cell (one kernel per step) against the eager reference, outputs and gradients."""
    from tcupgan.models.compiling import CompiledOrEager
    from tcupgan.models.convlstm import FUSED

    torch.manual_seed(0)
    net = TCuPGenerator(2, 1, widths=(4, 8))
    x = torch.randn(1, 2, 3, 16, 16)
    results = []
    for fuse in (False, True):
        for module in net.modules():
            if isinstance(module, ConvLSTM):
                module.fuse_gates = fuse
        net.zero_grad()
        out = net(x)
        out.square().mean().backward()
        results.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    assert not FUSED.failed, "torch.compile failed here: the comparison ran eager against eager"
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    for reference, fused in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(reference, fused, rtol=1e-4, atol=1e-5)
    assert isinstance(FUSED, CompiledOrEager)


def test_a_failing_compiler_falls_back_to_eager_with_one_warning(monkeypatch):
    from tcupgan.models.compiling import CompiledOrEager
    from tcupgan.models.convlstm import lstm_cell

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    cell, gates = CompiledOrEager(lstm_cell, "fused ConvLSTM gates"), torch.randn(1, 8, 4, 4)
    with pytest.warns(UserWarning, match="running eagerly"):
        h, c = cell(gates, None)
    torch.testing.assert_close((h, c), lstm_cell(gates, None))
    assert cell.failed
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        cell(gates, c)
    assert not later  # warned once, not at every step


def test_forget_gate_bias_and_init_are_applied():
    lstm = ConvLSTM(2, 4)
    bias = lstm.input_convs[0].bias
    assert torch.all(bias[4:8] == 1) and torch.all(bias[:4] == 0) and torch.all(bias[8:] == 0)
    net = TCuPGenerator(1, 1, widths=(8, 16, 32))
    default = torch.nn.ConvTranspose3d(32, 16, (1, 2, 2), stride=(1, 2, 2))
    up = net.ups[0].up
    # kaiming (fan_in, a=0.2) gives std ~sqrt(2 / 1.04 / fan_in); PyTorch's default is much smaller
    expected = (2 / 1.04 / (up.weight.shape[1] * 4)) ** 0.5
    assert abs(up.weight.std().item() - expected) / expected < 0.25
    assert up.weight.std() > 1.5 * default.weight.std()
    assert torch.all(net.head.bias == 0)


@pytest.mark.parametrize(
    "shape", [(2, 4, 5, 32, 32), (1, 4, 1, 33, 35), (1, 4, 3, 34, 17)], ids=["3d", "2d-odd", "odd"]
)
def test_generator_shapes_3d_2d_and_odd_sizes(shape):
    net = TCuPGenerator(4, 3, widths=(4, 8, 8, 16))
    out = net(torch.randn(shape))
    assert out.shape == (shape[0], 3, *shape[2:])


def test_paper_widths_parameter_counts_with_level_convolutions_and_added_skips():
    def count(net: torch.nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    paper = count(TCuPGenerator(4, 3, level_conv=False, skip_merge="concatenate"))
    concatenated = count(TCuPGenerator(4, 3, skip_merge="concatenate"))
    assert 2.0e6 < paper < 2.6e6  # the paper reports ~2.37 M for BraTS
    assert 1.05 < concatenated / paper < 1.2  # one w x w 3 x 3 convolution per level beside its ConvLSTM
    # an added skip halves each decoder ConvLSTM's input: 4w x w x 3 x 3 weights fewer per decoder level
    assert concatenated - count(TCuPGenerator(4, 3)) == sum(4 * w * w * 9 for w in (16, 32, 48, 64))


def test_bad_configuration_raises_with_the_fix():
    with pytest.raises(ValueError, match="norm"):
        TCuPGenerator(1, 1, norm="group")
    with pytest.raises(ValueError, match="'concatenate' or 'add'"):
        TCuPGenerator(1, 1, skip_merge="sum")
    with pytest.raises(ValueError, match="two positive levels"):
        TCuPGenerator(1, 1, widths=(8,))
    with pytest.raises(ValueError, match=r"unsqueeze\(2\)"):
        TCuPGenerator(1, 1, widths=(4, 8))(torch.randn(1, 1, 16, 16))


def _future_leak(**kwargs) -> tuple[float, float]:
    """Largest output change at slices < 5 and at slices >= 5 when only slices >= 5 of the input change."""
    torch.manual_seed(0)
    net = TCuPGenerator(1, 2, widths=(4, 8, 8), **kwargs).eval()
    x = torch.randn(1, 1, 8, 16, 16)
    changed = x.clone()
    changed[:, :, 5:] = torch.randn_like(changed[:, :, 5:])
    with torch.no_grad():
        a, b = net(x), net(changed)
    return (a[:, :, :5] - b[:, :, :5]).abs().max().item(), (a[:, :, 5:] - b[:, :, 5:]).abs().max().item()


def test_unidirectional_unseeded_generator_is_causal():
    early, late = _future_leak(bidirectional=False, seed_decoder=False)
    assert early == 0.0 and late > 1e-4  # slice t sees only slices <= t


def test_bidirectional_generator_sees_the_future():
    early, late = _future_leak(bidirectional=True, seed_decoder=False)
    assert early > 1e-4 and late > 1e-4


def test_paper_decoder_seeding_leaks_the_future():
    """The encoder's last cell state has seen every slice; seeding the decoder with it breaks causality."""
    early, _ = _future_leak(bidirectional=False, seed_decoder=True)
    assert early > 1e-4


def test_generator_gives_the_same_numbers_batched_and_per_step():
    torch.manual_seed(0)
    net = TCuPGenerator(1, 1, widths=(4, 8), batched_input=True).eval()
    x = torch.randn(1, 1, 4, 16, 16)
    with torch.no_grad():
        expected = net(x)
        for module in net.modules():
            if isinstance(module, ConvLSTM):
                module.batched_input = False
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-5)


def test_inference_without_gradients_gives_the_training_paths_numbers():
    """Without gradients the generator pools by views and runs the sigmoid-only gate arithmetic."""
    from tcupgan.models.convlstm import lstm_cell, lstm_cell_by_sigmoid
    from tcupgan.models.generator import pool_in_plane

    torch.manual_seed(0)
    net = TCuPGenerator(1, 2, widths=(4, 8, 16)).eval()
    x = torch.randn(2, 1, 5, 24, 20)
    with torch.no_grad():
        shortcut = net(x)
    torch.testing.assert_close(shortcut, net(x).detach(), rtol=1e-5, atol=1e-5)

    planes = torch.randn(2, 3, 4, 6, 8).round()  # rounding makes ties
    with torch.no_grad():
        assert torch.equal(pool_in_plane(planes), torch.nn.functional.max_pool3d(planes, (1, 2, 2)))
    gates, cx = torch.randn(2, 12, 5, 5) * 4, torch.randn(2, 3, 5, 5)
    for state in (cx, None):
        torch.testing.assert_close(lstm_cell_by_sigmoid(gates, state), lstm_cell(gates, state))
    half = gates.bfloat16(), cx.bfloat16()  # too coarse for tanh by sigmoid: the reference runs
    assert all(map(torch.equal, lstm_cell_by_sigmoid(*half), lstm_cell(*half)))


def test_slice_norm_of_bf16_keeps_float32_statistics():
    """A small spread on a large mean: statistics rounded to bf16 (steps of 2^-7 near 1) would move the
    normalised values by up to 0.04, twice what this allows; the output stays bf16."""
    from tcupgan.models.generator import SliceNorm

    torch.manual_seed(0)
    x = (1 + 0.05 * torch.randn(2, 3, 4, 32, 32)).bfloat16()
    y = SliceNorm(3).bfloat16()(x)
    assert y.dtype == torch.bfloat16
    plane = {"dim": (-2, -1), "keepdim": True}
    exact = (x.double() - x.double().mean(**plane)) / x.double().std(**plane, correction=0)
    torch.testing.assert_close(y.double(), exact, rtol=0.01, atol=0.02)


@pytest.mark.parametrize("depth_kernel", [1, 3])
def test_discriminator_patch_map_and_slice_scores(depth_kernel):
    disc = PatchDiscriminator(4, 3, width=8, n_layers=3, depth_kernel=depth_kernel)
    image, mask = torch.randn(2, 4, 5, 48, 40), torch.rand(2, 3, 5, 48, 40)
    patches = disc(image, mask)
    assert patches.shape == (2, 1, 5, 6, 5)
    scores = disc.slice_scores(image, mask)
    assert scores.shape == (2, 5) and scores.min() >= 0 and scores.max() <= 1


def test_discriminator_depth_kernel_sees_neighbours():
    torch.manual_seed(0)
    image, mask = torch.randn(1, 1, 5, 32, 32), torch.rand(1, 1, 5, 32, 32)
    changed = mask.clone()
    changed[:, :, 2] = 1 - changed[:, :, 2]
    for depth_kernel, neighbours_change in ((1, False), (3, True)):
        disc = PatchDiscriminator(1, 1, width=8, n_layers=2, depth_kernel=depth_kernel, dropout=0).eval()
        with torch.no_grad():
            delta = (disc(image, mask) - disc(image, changed)).abs().amax(dim=(0, 1, 3, 4))
        assert delta[2] > 0
        assert (delta[1] > 0) == neighbours_change
