"""Contact sheet: colours say true positive, false positive, miss."""

from types import SimpleNamespace

import numpy as np

from tools.inference.contact_sheet import FP_COLOUR, MISS_COLOUR, TP_COLOUR, classify_instances, render_errors, \
    write_contact_sheet


def _case():
    true = np.zeros((30, 40), np.int32)
    true[2:12, 2:12] = 1  # found
    true[15:25, 25:35] = 2  # missed
    pred = np.zeros((30, 40), np.int32)
    pred[2:12, 3:12] = 1  # matches true 1
    pred[18:26, 3:10] = 2  # invented
    return true, pred


def test_classify_instances():
    true, pred = _case()
    pred_matched, true_matched = classify_instances(true, pred)
    assert list(pred_matched[1:]) == [True, False]
    assert list(true_matched[1:]) == [True, False]


def test_render_uses_the_three_colours_where_they_belong():
    true, pred = _case()
    image = np.full((30, 40, 3), 100, np.uint8)
    picture = render_errors(image, true, pred)
    assert (picture[2, 5] == TP_COLOUR).all()  # edge of the matched prediction
    assert (picture[18, 5] == FP_COLOUR).all()  # edge of the invented one
    expected_miss = (0.5 * 100 + 0.5 * MISS_COLOUR).astype(np.uint8)
    assert (picture[20, 30] == expected_miss).all()
    assert (picture[0, 0] == 100).all()


def test_write_contact_sheet(tmp_path):
    true, pred = _case()
    sample = SimpleNamespace(image_id="a", image=np.zeros((30, 40, 3), np.uint8), labels=true,
                             image_type="fluorescence")
    perfect = SimpleNamespace(image_id="b", image=np.zeros((30, 40, 3), np.uint8), labels=true,
                              image_type="fluorescence")
    shown = write_contact_sheet(tmp_path, [perfect, sample], {"a": pred, "b": true})
    assert [image_id for image_id, _ in shown] == ["a", "b"]  # worst first
    assert (tmp_path / "contact_sheet.png").is_file() and (tmp_path / "contact" / "a.png").is_file()
    assert "contact/a.png" in (tmp_path / "contact_sheet.html").read_text()
