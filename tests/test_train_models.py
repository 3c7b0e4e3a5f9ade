"""The networks: shapes for stacks of 1 to 10, order invariance, stack pooling, parameter counts."""

import pytest
import torch
import torch.nn.functional as F
from train_fixtures import TINY, single_torch_thread  # noqa: F401

from focalstack.train.models import (
    ARCHITECTURES,
    build_model,
    count_parameters,
    defocusnet,
    depthnet,
    fod,
)
from focalstack.train.models._stack import StackConv, stack_max

ARCHS = sorted(ARCHITECTURES)


def tiny(arch):
    kwargs = dict(TINY) if arch != "fod-depth" else {"width": TINY["width"]}
    torch.manual_seed(0)
    return build_model(arch, **kwargs).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shapes_for_stacks_of_1_to_10(arch):
    model = tiny(arch)
    h, w = 20, 37  # not multiples of 16: padded inside, cropped back
    with torch.no_grad():
        for s in range(1, 11):
            out = model(torch.rand(2, s, 3, h, w), torch.rand(2, s))
            s_eff = 1 if model.single_image else s
            assert out["defocus"].shape == (2, s_eff, h, w)
            assert out["depth"].shape == (2, h, w)
            if arch == "fod-depth":
                assert "aif" not in out and "edges" not in out
            else:
                assert out["aif"].shape == (2, 3, h, w)
                assert out["edges"].shape == (2, h, w)
            assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("arch", ARCHS)
def test_shuffling_the_stack_does_not_change_the_outputs(arch):
    model = tiny(arch)
    torch.manual_seed(1)
    stack, focus = torch.rand(2, 7, 3, 32, 32), torch.rand(2, 7) + 0.05
    perm = torch.tensor([3, 0, 6, 2, 5, 1, 4])
    with torch.no_grad():
        a = model(stack, focus)
        b = model(stack[:, perm], focus[:, perm])
    assert (a["depth"] - b["depth"]).abs().max() < 1e-5
    if not model.single_image:
        assert (a["defocus"][:, perm] - b["defocus"]).abs().max() < 1e-5
    if "aif" in a:
        assert (a["aif"] - b["aif"]).abs().max() < 1e-5
        assert (a["edges"] - b["edges"]).abs().max() < 1e-5


def test_stack_pooling_lets_each_branch_see_the_others():
    """A branch-only network (no stack pooling) would leave image 0's defocus map unchanged."""
    model = tiny("fod")
    for m in model.modules():  # signal-preserving init, so that small effects are not lost in rounding
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, a=0.2)
    stack, focus = torch.rand(1, 4, 3, 32, 32), torch.rand(1, 4)
    changed = stack.clone()
    changed[:, 3] = torch.rand(3, 32, 32)
    with torch.no_grad():
        a, b = model(stack, focus), model(changed, focus)
    assert (a["defocus"][:, 0] - b["defocus"][:, 0]).abs().max() > 1e-3
    # ... and the depth map depends on every focus distance
    with torch.no_grad():
        c = model(stack, focus * torch.tensor([1.0, 1.0, 1.0, 1.5]))
    assert (a["depth"] - c["depth"]).abs().max() > 1e-3


def test_the_stack_is_folded_into_the_batch_axis():
    """No Python loop over slices: each branch layer runs once per forward, whatever the stack length."""
    model = tiny("fod")
    calls = []
    for layer in (model.defocus_net.encoder.first[0], model.depth_net.encoder.first[0], model.aif_net.stem):
        layer.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    with torch.no_grad():
        model(torch.rand(3, 10, 3, 16, 16), torch.rand(3, 10))
    assert calls == [30, 30, 30]


def test_stackconv_equals_a_conv_over_the_concatenated_stack_maximum():
    torch.manual_seed(0)
    conv = StackConv(5, 5, 7)
    x = torch.randn(3 * 4, 5, 9, 11)
    pooled = x.unflatten(0, (3, 4)).amax(1)
    ref = F.conv2d(
        torch.cat([x, pooled.unsqueeze(1).expand(-1, 4, -1, -1, -1).flatten(0, 1)], dim=1),
        conv.conv.weight,
        conv.conv.bias,
        padding=1,
    )
    assert torch.allclose(conv(x, pooled, 4), ref, atol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_concatenating_build_computes_the_same_outputs_and_gradients(channels_last):
    """StackConv.concat (the naive way, which benchmarks/train_bench.py compares) is the same network."""
    split, concat = tiny("fod"), tiny("fod")
    for m in concat.modules():
        if isinstance(m, StackConv):
            m.concat = True
    if channels_last:
        split.to(memory_format=torch.channels_last)
        concat.to(memory_format=torch.channels_last)
    stack, focus = torch.rand(2, 3, 3, 32, 32), torch.rand(2, 3)
    outs = []
    for model in (split, concat):
        out = model(stack, focus)
        sum(v.square().mean() for v in out.values()).backward()
        outs.append(out)
    for k in outs[0]:
        assert torch.allclose(outs[0][k], outs[1][k], atol=1e-5), k
    for (name, a), b in zip(split.named_parameters(), concat.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name


def test_stack_max_keeps_the_memory_format():
    x = torch.rand(2 * 3, 8, 5, 7)
    assert stack_max(x, 3).is_contiguous()
    cl = stack_max(x.contiguous(memory_format=torch.channels_last), 3)
    assert cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(cl, stack_max(x, 3))


def _defocusnet_by_hand(net, x, s):
    """DefocusNet written out slice by slice with explicit concatenation, as in the paper's figure."""
    act = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
    conv = lambda c, t: F.conv2d(t, c.weight, c.bias, padding=1)  # noqa: E731
    slices = list(x.unflatten(0, (-1, s)).unbind(1))
    skips, pooled = [], None
    for lvl in range(net.levels):
        first = net.encoder.first[lvl]
        first = first if lvl == 0 else first.conv
        if lvl > 0:
            m = torch.stack(pooled).amax(0)
            slices = [torch.cat([p, m], 1) for p in pooled]
        feats = [act(conv(net.encoder.second[lvl], act(conv(first, t)))) for t in slices]
        skips.append(feats)
        pooled = [F.max_pool2d(t, 2) for t in feats]
    m = torch.stack(pooled).amax(0)
    y = [act(conv(net.encoder.bridge.conv, torch.cat([p, m], 1))) for p in pooled]
    for i in range(net.levels):
        up = [act(conv(net.up[i].conv, F.interpolate(t, scale_factor=2.0, mode="bilinear"))) for t in y]
        y = [act(conv(net.joint[i], torch.cat([u, sk], 1))) for u, sk in zip(up, skips[-1 - i])]
    out = [net.out(act(net.end(t))) for t in y]
    return torch.stack(out, 1).flatten(0, 1)


def test_defocusnet_matches_a_slice_by_slice_implementation():
    torch.manual_seed(0)
    net = defocusnet(width=4).eval()
    x = torch.rand(2 * 3, 3, 32, 32)
    with torch.no_grad():
        fast, _ = net(x, 3)
        slow = _defocusnet_by_hand(net, x, 3)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_parameter_counts_match_the_reference_within_10_percent():
    n_defocus, n_depth = count_parameters(defocusnet()), count_parameters(depthnet())
    assert abs(n_defocus - 1.77e6) / 1.77e6 < 0.10, n_defocus
    assert abs(n_depth - 1.96e6) / 1.96e6 < 0.10, n_depth
    full = fod()
    assert count_parameters(full) == n_defocus + n_depth + count_parameters(full.aif_net)


def test_single_image_variant_sees_only_the_median_focus_slice():
    model = tiny("fod-single")
    stack, focus = torch.rand(2, 5, 3, 16, 16), torch.tensor([[0.3, 0.1, 1.5, 0.7, 0.15], [1.5, 0.7, 0.3, 0.15, 0.1]])
    with torch.no_grad():
        out = model(stack, focus)
        median = torch.stack([stack[0, 0], stack[1, 2]])[:, None]  # the 0.3 m slice of each row
        ref = model(median, torch.tensor([[0.3], [0.3]]))
    assert torch.allclose(out["depth"], ref["depth"], atol=1e-6)


def test_aif_direct_ablation_ignores_defocus_maps():
    a, b = tiny("fod-aif-direct"), tiny("fod")
    assert a.aif_net.stem.in_channels == 3 and b.aif_net.stem.in_channels == 4
    single, single_direct = tiny("fod-single"), tiny("fod-single-direct")
    assert single.single_image and single_direct.single_image
    assert single.aif_net.stem.in_channels == 4 and single_direct.aif_net.stem.in_channels == 3


def test_unknown_architecture_or_option_is_refused():
    with pytest.raises(ValueError, match="architecture 'nope'"):
        build_model("nope")
    with pytest.raises(ValueError, match="aif_width"):
        build_model("fod-depth", aif_width=3)


def _conv_outputs(model, stack, focus):
    """The outputs of the model and, per nn.Conv2d module, whether its output was channels-last."""
    formats = {}

    def record(name):
        def hook(module, inputs, output):  # returns None: the output stays as it is
            formats[name] = output.is_contiguous(memory_format=torch.channels_last)

        return hook

    handles = [
        m.register_forward_hook(record(name))
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d) and m.out_channels > 1
    ]  # one channel: both formats at once
    with torch.no_grad():
        out = model(stack, focus)
    for h in handles:
        h.remove()
    return out, formats


def test_a_model_moved_to_channels_last_runs_in_it_and_gives_the_same_outputs():
    model = tiny("fod")
    stack, focus = torch.rand(2, 3, 3, 20, 24), torch.rand(2, 3)
    ref, ref_formats = _conv_outputs(model, stack, focus)
    assert ref_formats and not any(ref_formats.values())  # the default format: no conv is channels-last
    model.to(memory_format=torch.channels_last)
    assert not hasattr(model, "channels_last")  # the format is the weights', not a flag set by a trainer
    seen = []
    first = model.defocus_net.encoder.first[0]
    handle = first.register_forward_pre_hook(lambda m, i: seen.append(i[0].is_contiguous(memory_format=torch.channels_last)))
    out, formats = _conv_outputs(model, stack, focus)
    handle.remove()
    assert seen == [True]  # the model converts its input to the weights' format
    assert formats.keys() == ref_formats.keys() and all(formats.values()), formats
    for k in ref:
        assert out[k].shape == ref[k].shape
        assert torch.allclose(out[k], ref[k], atol=1e-5), k
