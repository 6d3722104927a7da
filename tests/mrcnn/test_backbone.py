import keras
import numpy as np
import pytest

from mrcnn.backbone import build_backbone, layer_stage
from mrcnn.config import Config, TinyConfig


def test_tiny_backbone_shapes():
    model = build_backbone(TinyConfig())
    outs = model(np.zeros((1, 128, 192, 3), np.float32))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 48, 32), (1, 16, 24, 32), (1, 8, 12, 32),
                                              (1, 4, 6, 32), (1, 2, 3, 32)]


def test_mobilenetv2_backbone_shapes():
    config = Config(BACKBONE="mobilenetv2", BACKBONE_ALPHA=0.35, TOP_DOWN_PYRAMID_SIZE=16)
    model = build_backbone(config)
    outs = model(np.zeros((1, 64, 128, 3), np.float32))
    assert [tuple(o.shape)[1:3] for o in outs] == [(16, 32), (8, 16), (4, 8), (2, 4), (1, 2)]
    assert layer_stage("mobilenetv2", "block_13_expand") == 5
    assert layer_stage("mobilenetv2", "block_4_add") == 3
    assert layer_stage("mobilenetv2", "fpn_p2") is None


def test_resnet_stage_names():
    assert layer_stage("resnet50", "conv4_block2_out") == 4
    assert layer_stage("resnet101", "conv1_conv") == 1
