from keras import ops

from mrcnn.heads import BoxHead, MaskHead


def test_box_head_shapes():
    logits, probs, deltas = BoxHead(3, fc_size=16)(ops.zeros((2, 5, 7, 7, 8)))
    assert logits.shape == (2, 5, 3) and probs.shape == (2, 5, 3) and deltas.shape == (2, 5, 3, 4)


def test_mask_head_28_and_56():
    assert MaskHead(2, channels=8, convs=1, upsamplings=1)(ops.zeros((1, 3, 14, 14, 4))).shape == (1, 3, 28, 28, 2)
    assert MaskHead(2, channels=8, convs=1, upsamplings=2)(ops.zeros((1, 3, 14, 14, 4))).shape == (1, 3, 56, 56, 2)


def test_transposed_conv_as_a_matrix_product_gives_the_layers_numbers():
    import keras
    import numpy as np

    from mrcnn.heads import upsample_as_matmul

    layer = keras.layers.Conv2DTranspose(5, 2, strides=2, activation="relu")
    x = np.random.default_rng(0).normal(size=(3, 4, 6, 7)).astype(np.float32)
    layer.build(x.shape)
    layer.bias.assign(np.linspace(-1, 1, 5))  # a bias that matters
    want = ops.convert_to_numpy(layer(x))
    got = ops.convert_to_numpy(upsample_as_matmul(layer, ops.convert_to_tensor(x)))
    assert got.shape == (3, 8, 12, 5)
    np.testing.assert_allclose(got, want, atol=1e-5)
