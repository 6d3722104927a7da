import pytest

from preprocessing.errors import NucleiError
from preprocessing.settings import config_path_for
from unet.config import UNetConfig


def test_defaults_validate_and_derive():
    config = UNetConfig()
    assert config.multiple == 16 and config.input_channels == 3
    assert config.level_filters() == [32, 64, 128, 256, 256]
    assert UNetConfig(normalization="clahe").input_channels == 2


@pytest.mark.parametrize("field,value", [("depth", 0), ("encoder", "vgg"), ("crop_size", 250),
                                         ("seed_threshold", 1.5), ("normalization", "zscore"),
                                         ("class_weights", (1, 2)), ("seed_source", "peaks"),
                                         ("distance_weight", -1.0)])
def test_bad_values_raise_clear_errors(field, value):
    with pytest.raises(NucleiError, match=field.split("_")[0]):
        UNetConfig(**{field: value})


def test_save_load_round_trip(tmp_path):
    config = UNetConfig(base_filters=8, depth=3, crop_size=64, tile_size=256, bottleneck_dilations=(1, 2))
    config.save(tmp_path / "m.json")
    assert UNetConfig.load(tmp_path / "m.json") == config
    assert config_path_for(tmp_path / "m.weights.h5") == tmp_path / "m.json"


def test_unknown_field_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"model": "unet", "config": {"filterz": 3}}')
    with pytest.raises(NucleiError, match="bad.json.*filterz"):
        UNetConfig.load(path)


def test_distance_decoding_needs_the_distance_head():
    for field, value in (("seed_source", "distance"), ("watershed_surface", "predicted_distance")):
        with pytest.raises(NucleiError, match="distance_head"):
            UNetConfig(**{field: value})
        assert UNetConfig(distance_head=True, **{field: value}).output_channels == 4
    assert UNetConfig().output_channels == 3
