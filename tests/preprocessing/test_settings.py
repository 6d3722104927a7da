"""preprocessing.settings: a value of the wrong type names its field and the file."""

import pytest

from preprocessing.errors import NucleiError
from unet.config import UNetConfig


@pytest.mark.parametrize("field, value, expected", [
    ("depth", "deep", "a whole number"),
    ("depth", 2.5, "a whole number"),
    ("depth", True, "a whole number"),
    ("learning_rate", "fast", "a number"),
    ("batch_norm", 1, "true or false"),
    ("encoder", 3, "a string"),
])
def test_wrong_type_names_the_field_and_the_file(field, value, expected):
    with pytest.raises(NucleiError) as caught:
        UNetConfig.from_dict({field: value}, "my_config.json")
    message = str(caught.value)
    assert field in message and expected in message and "my_config.json" in message


def test_an_int_where_a_float_belongs_is_fine():
    assert UNetConfig.from_dict({"learning_rate": 1}).learning_rate == 1
