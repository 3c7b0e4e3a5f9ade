"""Device and precision words: resolved in one place for fit, evaluate and predict, errors name the option."""

import pytest
import torch

from focalstack.train.device import autocast, resolve_amp, resolve_channels_last, resolve_device

CPU = torch.device("cpu")


def test_auto_means_float32_and_channels_last_on_the_cpu():
    assert resolve_amp("auto", CPU) is None and resolve_amp("bf16", CPU) is torch.bfloat16
    assert resolve_channels_last("auto", CPU) is torch.backends.mkldnn.is_available()  # oneDNN's convolutions
    assert resolve_channels_last("auto", torch.device("cuda")) is True  # decided by the type alone
    assert resolve_channels_last("on", CPU) is True and resolve_channels_last("off", torch.device("cuda")) is False


def test_unknown_words_name_the_option():
    with pytest.raises(ValueError, match="--amp 'fp16'"):
        resolve_amp("fp16", CPU)
    with pytest.raises(ValueError, match="--channels-last 'yes'"):
        resolve_channels_last("yes", CPU)
    with pytest.raises(ValueError, match="--device 'tpu'"):
        resolve_device("tpu")


def test_autocast_runs_in_bf16_only_when_asked():
    x = torch.rand(2, 3)
    with autocast(CPU, torch.bfloat16):
        assert (x @ x.T).dtype == torch.bfloat16
    with autocast(CPU, None):
        assert (x @ x.T).dtype == torch.float32
