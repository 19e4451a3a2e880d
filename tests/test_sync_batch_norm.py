"""Synchronised fused BatchNorm: the split ops match the fused op and the reference, and two
gloo ranks with synchronised statistics compute what one process computes on the whole
batch (which is what nn.SyncBatchNorm computes; torch's own refuses CPU tensors)."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import fastgan
from fastgan import reference
from fastgan.fuse import plan
from fastgan.nn import Conv2dBNLeakyReLU, ConvTranspose2dBNReLU, SyncBatchNorm2d, convert_sync_batchnorm

from helpers import assert_close, stock_activation

ACTIVATIONS = [("relu", 0.0), ("leaky_relu", 0.2), ("leaky_relu", -0.3), ("tanh", 0.0)]


def split_ops():
    return torch.ops.fastgan if fastgan.backend() == "fused" else reference


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("activation,slope", ACTIVATIONS)
def test_split_ops_compose_to_the_fused_backward(backend, dtype, fmt, activation, slope):
    """stats -> apply and reduce -> elemt with one rank's count give the training op's results."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(4, 6, 5, 3, generator=g, dtype=dtype) * 3 + 2).contiguous(memory_format=fmt)
    w, b = torch.rand(6, generator=g, dtype=dtype) + 0.5, torch.randn(6, generator=g, dtype=dtype)
    dy = torch.randn(x.shape, generator=g, dtype=dtype).contiguous(memory_format=fmt)
    ops = split_ops()
    mean, var = ops.batch_norm_stats(x)
    var_ref, mean_ref = torch.var_mean(x, dim=(0, 2, 3), correction=0)
    assert_close(mean, mean_ref, dtype)
    assert_close(var, var_ref, dtype)

    x_ref = x.clone().requires_grad_()
    w_ref, b_ref = w.clone().requires_grad_(), b.clone().requires_grad_()
    y_ref = stock_activation(activation, slope)(nn.functional.batch_norm(x_ref, None, None, w_ref, b_ref, True, 0.0,
                                                                         1e-5))
    y_ref.backward(dy)
    sum_dy, sum_dy_xmu = ops.batch_norm_act_backward_reduce(dy, x, w, b, mean, var, 1e-5, activation, slope)
    assert_close(sum_dy, b_ref.grad, dtype, msg="sum_dy is grad_bias")
    assert_close(sum_dy_xmu * torch.rsqrt(var + 1e-5), w_ref.grad, dtype, scale=10, msg="sum_dy_xmu * invstd")
    n = x.numel() // x.size(1)
    gi = ops.batch_norm_act_backward_elemt(dy, x, w, b, mean, var, sum_dy / n, sum_dy_xmu / n, 1e-5, activation,
                                           slope)
    assert_close(gi, x_ref.grad, dtype, scale=10, msg="grad_input")
    assert gi.is_contiguous(memory_format=fmt)


@pytest.mark.skipif(not fastgan._backend.COMPILED, reason="argument checks of the compiled ops")
def test_split_ops_reject_wrong_channel_counts():
    x = torch.randn(2, 3, 4, 4)
    m = torch.zeros(3)
    with pytest.raises(ValueError, match="mean_dy must be a 1-D tensor of 3 elements"):
        torch.ops.fastgan.batch_norm_act_backward_elemt(x, x, None, None, m, m + 1, torch.zeros(4), m, 1e-5, "relu",
                                                        0.0)
    with pytest.raises(ValueError, match="4-D input"):
        torch.ops.fastgan.batch_norm_stats(torch.randn(3, 3))


def test_convert_sync_batchnorm_keeps_the_state_dict_and_fuses():
    model = fastgan.models.Discriminator(ndf=4, nc=1, image_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model = convert_sync_batchnorm(model)
    assert any(type(m) is SyncBatchNorm2d for m in model.modules())
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    kinds = [kind for _, kind, _, _ in plan(list(model.main._modules.values()))]
    assert "conv_bn_act" in kinds
    # No process group initialised: it is an ordinary BatchNorm2d, as torch's is.
    stock = fastgan.unfuse(model)
    x = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(model(x), stock(x))


# --- Two ranks (gloo, CPU) --------------------------------------------------------------------

WORLD = 2
BATCH = (3, 5)  # uneven on purpose: the global count is reduced, not assumed


def _layer(kind, sync, dtype):
    torch.manual_seed(0)
    if kind == "conv":
        layer = Conv2dBNLeakyReLU(3, 6, 3, 1, 1, sync_bn=sync, momentum=None, dtype=dtype)
    else:
        layer = ConvTranspose2dBNReLU(3, 6, 4, 2, 1, sync_bn=sync, dtype=dtype)
    with torch.no_grad():
        layer[1].weight.uniform_(0.5, 1.5)
        layer[1].bias.normal_()
    return layer


def _data(dtype, fmt):
    g = torch.Generator().manual_seed(7)
    xs = [(torch.randn(n, 3, 6, 6, generator=g, dtype=dtype) * 2 + 1).contiguous(memory_format=fmt) for n in BATCH]
    return xs


def _worker(rank, init_file, backend_name):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    fastgan.set_backend(backend_name)
    for dtype in (torch.float64, torch.float32):
        for fmt in (torch.contiguous_format, torch.channels_last):
            for kind in ("conv", "deconv"):
                _check_sync_matches_whole_batch(rank, kind, dtype, fmt)
                _check_unsynced_matches_per_rank_stock(rank, kind, dtype, fmt)
    _check_standalone_sync_batch_norm(rank)
    _check_ddp_discriminator_two_forwards_one_backward(rank)
    # Torn down only on success, and only once both ranks are past their last collective: one
    # rank destroying gloo's pairs while the other still uses them aborted a run ("terminate
    # called without an active exception", seen once with torch 2.13). On a failure
    # mp.spawn reports it and stops the other rank.
    dist.barrier()
    dist.destroy_process_group()


def _check_sync_matches_whole_batch(rank, kind, dtype, fmt):
    xs = _data(dtype, fmt)
    whole = fastgan.unfuse(_layer(kind, False, dtype))  # stock nn.Sequential on both ranks' samples
    mine = _layer(kind, True, dtype)
    assert type(mine[1]) is SyncBatchNorm2d
    start = sum(BATCH[:rank])
    for step in range(3):  # running stats over several steps (momentum=None in "conv")
        x_all = torch.cat(xs).requires_grad_()
        y_all = whole(x_all)
        dy_all = torch.randn(y_all.shape, generator=torch.Generator().manual_seed(step), dtype=dtype)
        y_all.backward(dy_all)
        x = xs[rank].clone().requires_grad_()
        y = mine(x)
        y.backward(dy_all[start:start + BATCH[rank]].contiguous(memory_format=fmt))
        scale = 1 if dtype == torch.float64 else 10
        what = f"rank {rank} {kind} {dtype} {fmt} step {step}"
        assert_close(y, y_all[start:start + BATCH[rank]], dtype, scale, msg=f"output, {what}")
        assert_close(x.grad, x_all.grad[start:start + BATCH[rank]], dtype, scale, msg=f"grad_input, {what}")
        for (name, p), p_all in zip(mine.named_parameters(), whole.parameters()):
            grad = p.grad.clone()
            dist.all_reduce(grad)  # per-rank parameter gradients add up to the whole batch's
            assert_close(grad, p_all.grad, dtype, scale * 10, msg=f"{name} grad, {what}")
        for (name, b), b_all in zip(mine.named_buffers(), whole.buffers()):
            assert_close(b.to(dtype), b_all.to(dtype), dtype, scale, msg=f"{name}, {what}")
        assert y.is_contiguous(memory_format=fmt)
        mine.zero_grad(), whole.zero_grad()


def _check_unsynced_matches_per_rank_stock(rank, kind, dtype, fmt):
    xs = _data(dtype, fmt)
    stock = fastgan.unfuse(_layer(kind, False, dtype))
    mine = _layer(kind, False, dtype)
    y, y_stock = mine(xs[rank]), stock(xs[rank])
    assert_close(y, y_stock, dtype, 10, msg=f"unsynchronised output, rank {rank}")
    for b, b_stock in zip(mine.buffers(), stock.buffers()):
        assert_close(b.to(dtype), b_stock.to(dtype), dtype, msg=f"unsynchronised running stats, rank {rank}")


def _check_standalone_sync_batch_norm(rank):
    """A SyncBatchNorm2d outside a fused layer (after unfuse, or in a user's own model)."""
    xs = _data(torch.float64, torch.contiguous_format)
    torch.manual_seed(3)
    whole = nn.BatchNorm2d(3, dtype=torch.float64)
    mine = convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3, dtype=torch.float64)))[0]
    x_all, x = torch.cat(xs), xs[rank]
    start = sum(BATCH[:rank])
    assert_close(mine(x), whole(x_all)[start:start + BATCH[rank]], torch.float64, msg="stand-alone SyncBatchNorm2d")
    assert_close(mine.running_var, whole.running_var, torch.float64, msg="stand-alone running_var")


def _check_ddp_discriminator_two_forwards_one_backward(rank):
    """The GAN pattern D(real), D(fake), one backward, under DDP with buffer broadcasting on,
    synchronised and not: the fused layers never save a running statistic for backward, so
    the broadcast cannot invalidate a pending backward."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    for sync in (False, True):
        torch.manual_seed(0)
        d = fastgan.models.Discriminator(ndf=4, nc=1, image_size=32).double()
        d = DDP(convert_sync_batchnorm(d) if sync else d)  # rank 0's buffers broadcast at each forward
        real, fake = torch.randn(4, 1, 32, 32, dtype=torch.float64), torch.randn(4, 1, 32, 32, dtype=torch.float64)
        loss = fastgan.functional.bce_with_logits(d(real), 1.0) + fastgan.functional.bce_with_logits(d(fake), 0.0)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in d.parameters())


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_ranks_synchronised_equal_one_process_on_the_whole_batch(backend, tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), backend), nprocs=WORLD, join=True)


def test_sync_batch_norm_act_checks_its_arguments():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="running_mean has shape"):
        fastgan.functional.sync_batch_norm_act(x, torch.zeros(4), torch.ones(4))
    with pytest.raises(ValueError, match="unknown activation"):
        fastgan.functional.sync_batch_norm_act(x, None, None, activation="gelu")
