import pytest

from mrcnn.config import Config, NucleusConfig, TinyConfig, config_from_name
from preprocessing.errors import NucleiError


def test_defaults_validate_and_derive():
    config = Config()
    assert config.BATCH_SIZE == config.IMAGES_PER_GPU * config.GPU_COUNT
    assert config.MASK_UPSAMPLINGS == 1
    assert config.ANCHORS_PER_LOCATION == 3


def test_nucleus_config_has_small_anchors():
    config = NucleusConfig()
    assert tuple(config.RPN_ANCHOR_SCALES) == (8, 16, 32, 64, 128)
    assert config.DETECTION_MAX_INSTANCES >= 300
    assert config.IMAGE_PAD_MULTIPLE == 64


def test_subclass_and_overrides():
    class Mine(Config):
        NAME = "mine"
        IMAGES_PER_GPU = 3

    config = Mine(GPU_COUNT=2)
    assert config.BATCH_SIZE == 6 and config.NAME == "mine"


def test_mask_56_option():
    config = Config(MASK_SHAPE=(56, 56))
    assert config.MASK_UPSAMPLINGS == 2


@pytest.mark.parametrize("overrides, word", [
    ({"BACKBONE": "vgg"}, "BACKBONE"),
    ({"IMAGE_CROP_SIZE": 100}, "IMAGE_CROP_SIZE"),
    ({"NUM_CLASSES": 1}, "NUM_CLASSES"),
    ({"MASK_SHAPE": (30, 30)}, "MASK_SHAPE"),
    ({"RPN_ANCHOR_SCALES": (8, 16)}, "RPN_ANCHOR_SCALES"),
    ({"TRAIN_ROIS_PER_IMAGE": 0}, "TRAIN_ROIS_PER_IMAGE"),
    ({"NOT_A_FIELD": 1}, "NOT_A_FIELD"),
    ({"RPN_NEGATIVE_IOU": 0.8}, "RPN_NEGATIVE_IOU"),
])
def test_bad_values_raise_nuclei_error(overrides, word):
    with pytest.raises(NucleiError, match=word):
        Config(**overrides)


def test_json_round_trip(tmp_path):
    config = TinyConfig(LEARNING_RATE=0.01)
    config.save(tmp_path / "config.json")
    again = Config.load(tmp_path / "config.json")
    assert again.to_dict()["LEARNING_RATE"] == 0.01
    for name in Config.field_names():
        assert again.to_dict()[name] == config.to_dict()[name]
    assert again.BATCH_SIZE == config.BATCH_SIZE


def test_load_bad_json(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{nope")
    with pytest.raises(NucleiError, match="c.json"):
        Config.load(path)


def test_config_from_name():
    assert config_from_name("tiny").BACKBONE == "tiny"
    with pytest.raises(NucleiError):
        config_from_name("huge")
