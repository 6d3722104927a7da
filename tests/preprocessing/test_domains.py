"""Acquisition domains: features, clustering, hold-out splits, per-domain scores, the JSON file."""

import json

import numpy as np
import pytest

from preprocessing.domains import (DOMAINS_FORMAT, assign_domains, clusters_per_kind, default_holdout,
                                   domain_distances, domain_holdout_split, domain_scores, image_features,
                                   kind_of, leave_one_domain_out, load_domains, nearest_domain, save_domains)
from preprocessing.errors import NucleiError
from preprocessing.image_types import classify_image


def disks(shape, radius, rng, count):
    """int32 [H, W] labels: `count` disks of `radius` at random non-overlapping-ish places."""
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for nucleus_id in range(1, count + 1):
        cy, cx = rng.integers(radius, shape[0] - radius), rng.integers(radius, shape[1] - radius)
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2) & (labels == 0)] = nucleus_id
    return labels


def synthetic(kind, seed):
    """(image uint8 [H, W, 3], labels int32 [H, W]) of one acquisition kind."""
    rng = np.random.default_rng(seed)
    if kind == "fluo-small":  # dark background, small bright nuclei, 256x256
        labels = disks((256, 256), 4, rng, 40)
        grey = np.where(labels > 0, 180, 8) + rng.integers(0, 10, labels.shape)
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2), labels
    if kind == "fluo-large":  # dark background, big nuclei, 520x696
        labels = disks((520, 696), 14, rng, 30)
        grey = np.where(labels > 0, 120, 12) + rng.integers(0, 10, labels.shape)
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2), labels
    if kind == "bright":  # light grey background, dark nuclei, large image
        labels = disks((600, 800), 10, rng, 30)
        grey = np.where(labels > 0, 70, 215) + rng.integers(0, 10, labels.shape)
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2), labels
    if kind in ("histo-purple", "histo-pink"):  # light stained background, dark purple nuclei
        shape, radius = ((256, 320), 6) if kind == "histo-purple" else ((512, 680), 11)
        background = (200, 190, 215) if kind == "histo-purple" else (235, 200, 215)
        labels = disks(shape, radius, rng, 40)
        image = np.where(labels[..., None] > 0, np.array((130, 80, 170)), np.array(background))
        image = image + rng.integers(0, 8, shape + (3,))
        return image.astype(np.uint8), labels
    raise ValueError(kind)


GROUPS = {"fluo-small": 8, "fluo-large": 8, "bright": 4, "histo-purple": 6, "histo-pink": 6}


@pytest.fixture(scope="module")
def dataset():
    """{image_id: features}, {image_id: the synthetic group it was made as}."""
    features, truth = {}, {}
    for g, (group, count) in enumerate(GROUPS.items()):
        for k in range(count):
            image_id = f"{group}-{k}"
            features[image_id] = image_features(*synthetic(group, seed=100 * g + k))
            truth[image_id] = group
    return features, truth


# --- features -----------------------------------------------------------------------------------

def test_image_features_describe_the_acquisition():
    image, labels = synthetic("histo-purple", seed=0)
    features = image_features(image, labels)
    assert (features["height"], features["width"]) == (256, 320)
    assert features["is_colour"] == 1 and features["light_background"] == 1
    assert features["red_minus_blue"] < 0  # purple, not pink / yellow
    assert 240 < features["hue"] < 330
    assert features["nucleus_count"] == labels.max()
    assert abs(features["median_nucleus_area"] - np.pi * 6**2) < 20
    assert abs(features["nuclei_per_megapixel"] - labels.max() * 1e6 / (256 * 320)) < 1e-6
    grey = image_features(*synthetic("fluo-small", seed=0))
    assert grey["is_colour"] == 0 and grey["light_background"] == 0 and grey["saturation"] == 0
    assert "median_nucleus_area" not in image_features(image)  # no labels, no nucleus statistics


def test_kind_agrees_with_image_types():
    expected = {"histology": "histo", "brightfield": "bright", "fluorescence": "fluo"}
    for group in GROUPS:
        image, _ = synthetic(group, seed=1)
        assert kind_of(image_features(image)) == expected[classify_image(image)]


def test_image_features_reject_bad_input():
    with pytest.raises(NucleiError):
        image_features(np.zeros((10, 10), np.uint8))
    with pytest.raises(NucleiError):
        image_features(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 11), np.int32))


# --- clustering ---------------------------------------------------------------------------------

def test_clusters_per_kind_follows_sqrt_of_counts():
    assert clusters_per_kind({"fluo": 16, "bright": 4, "histo": 12}, 5) == {"fluo": 2, "bright": 1, "histo": 2}
    assert clusters_per_kind({"fluo": 100, "histo": 1}, 6) == {"fluo": 5, "histo": 1}
    with pytest.raises(NucleiError):
        clusters_per_kind({"fluo": 5, "bright": 5, "histo": 5}, 2)


def test_different_acquisitions_fall_in_different_domains(dataset):
    features, truth = dataset
    domains = assign_domains(features, n_domains=5)
    assert set(domains) == set(features)
    for group in GROUPS:  # each group is one domain, and no two groups share one
        assert len({domains[i] for i in features if truth[i] == group}) == 1
    assert len(set(domains.values())) == len(GROUPS)
    assert {domains[f"{group}-0"] for group in GROUPS} == {
        "fluo-256x256", "fluo-520x696", "bright-600x800", "histo-256x320", "histo-512x680"}


def test_assignment_is_deterministic_and_independent_of_order(dataset):
    features, _ = dataset
    first = assign_domains(features, n_domains=5, seed=3)
    shuffled = dict(reversed(list(features.items())))
    assert assign_domains(shuffled, n_domains=5, seed=3) == first
    assert assign_domains(features, n_domains=5, seed=3) == first


def test_clusters_sharing_a_size_get_nucleus_size_suffixes():
    rng = np.random.default_rng(0)
    features = {}
    for radius, tag in ((3, "s"), (12, "l")):
        for k in range(5):
            labels = disks((256, 256), radius, rng, 20)
            grey = np.where(labels > 0, 150, 10).astype(np.uint8)
            features[f"{tag}{k}"] = image_features(np.repeat(grey[..., None], 3, axis=2), labels)
    domains = assign_domains(features, n_domains=2)
    assert {domains[f"s{k}"] for k in range(5)} == {"fluo-256x256-small"}
    assert {domains[f"l{k}"] for k in range(5)} == {"fluo-256x256-large"}


def test_unlabelled_images_go_to_the_nearest_domain_of_their_kind(dataset):
    features, truth = dataset
    domains = assign_domains(features, n_domains=5)
    for group in GROUPS:
        image, _ = synthetic(group, seed=999)
        assert nearest_domain(image_features(image), features, domains) == domains[f"{group}-0"]
    distances = domain_distances(image_features(synthetic("histo-pink", seed=5)[0]), features, domains)
    assert set(distances) == {"histo-256x320", "histo-512x680"}  # only its kind


# --- splits and scores --------------------------------------------------------------------------

def test_holdout_split_is_disjoint_and_covering(dataset):
    features, _ = dataset
    domains = assign_domains(features, n_domains=5)
    ids = list(features)
    train, val = domain_holdout_split(ids, domains, ["bright-600x800", "histo-512x680"])
    assert not set(train) & set(val) and sorted(train + val) == sorted(ids)
    assert {domains[i] for i in val} == {"bright-600x800", "histo-512x680"}
    assert train == sorted(train) and val == sorted(val)
    with pytest.raises(NucleiError):
        domain_holdout_split(ids, domains, ["no-such-domain"])
    with pytest.raises(NucleiError):
        domain_holdout_split(ids + ["stranger"], domains, [])


def test_leave_one_domain_out_has_one_fold_per_domain(dataset):
    features, _ = dataset
    domains = assign_domains(features, n_domains=5)
    folds = leave_one_domain_out(list(features), domains)
    assert [name for name, _, _ in folds] == sorted(set(domains.values()))
    for name, train, val in folds:
        assert {domains[i] for i in val} == {name} and name not in {domains[i] for i in train}
        assert len(train) + len(val) == len(features)
    assert sorted(i for _, _, val in folds for i in val) == sorted(features)


def test_default_holdout_takes_one_colour_and_one_grey_domain(dataset):
    features, _ = dataset
    domains = assign_domains(features, n_domains=5)
    holdout = default_holdout(domains)
    assert holdout == default_holdout(dict(reversed(list(domains.items()))))
    assert sum(name.startswith("histo-") for name in holdout) == 1
    assert sum(not name.startswith("histo-") for name in holdout) == 1
    # grey target 15 % of 20 = 3 images: the 4-image brightfield domain is closest;
    # colour target 1.8: two 6-image domains tie, the first name wins
    assert holdout == ["bright-600x800", "histo-256x320"]
    # a group with one domain only is never held out entirely
    assert default_holdout({"a": "histo-1", "b": "fluo-1", "c": "fluo-2"}) == ["fluo-1"]


def test_domain_scores_on_a_hand_example():
    domains = {"a": "X", "b": "X", "c": "X", "d": "Y", "e": "Z"}
    scores = domain_scores({"a": 1.0, "b": 0.5, "c": 0.0, "d": 0.2}, domains)
    assert scores["per_domain"] == pytest.approx({"X": 0.5, "Y": 0.2})  # Z has no score: left out
    assert scores["counts"] == {"X": 3, "Y": 1}
    assert scores["balanced_mean"] == pytest.approx(0.35)
    assert scores["mean"] == pytest.approx(1.7 / 4)
    with pytest.raises(NucleiError):
        domain_scores({"zz": 1.0}, domains)


# --- the file -----------------------------------------------------------------------------------

def test_domain_file_round_trip(tmp_path, dataset):
    features, _ = dataset
    domains = assign_domains(features, n_domains=5)
    path = tmp_path / "domains.json"
    save_domains(path, domains, extra={"holdout": default_holdout(domains)})
    assert load_domains(path) == domains
    payload = json.loads(path.read_text())
    assert payload["format"] == DOMAINS_FORMAT and payload["holdout"] == default_holdout(domains)
    assert [p.name for p in tmp_path.iterdir()] == ["domains.json"]  # no temporary left behind


@pytest.mark.parametrize("text", ["{not json", json.dumps({"domains": {"a": "X"}}),
                                  json.dumps({"format": DOMAINS_FORMAT, "domains": {"a": 3}}),
                                  json.dumps([1, 2])])
def test_bad_domain_files_raise_naming_the_file(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(NucleiError, match="bad.json"):
        load_domains(path)
    with pytest.raises(NucleiError, match="not found"):
        load_domains(tmp_path / "missing.json")


# --- how familiar a new image is -----------------------------------------------------------------

def test_reference_flags_an_acquisition_unlike_any_training_image(dataset, tmp_path):
    from preprocessing.domains import domain_reference, load_reference, reference_distance, save_reference

    features, truth = dataset
    train = {i: f for i, f in features.items() if truth[i] != "histo-pink"}  # no pink H&E in training
    reference = domain_reference(train, assign_domains(train, n_domains=4))
    save_reference(tmp_path / "ref.json", reference)
    reference = load_reference(tmp_path / "ref.json")
    for image_id in train:  # every training image is within its kind's own extreme
        _, distance, limit = reference_distance(train[image_id], reference)
        assert distance <= limit + 1e-9
    new_purple = image_features(*synthetic("histo-purple", seed=999))
    new_pink = image_features(*synthetic("histo-pink", seed=999))
    assert reference_distance(new_purple, reference)[1] <= reference_distance(new_purple, reference)[2]
    domain, distance, limit = reference_distance(new_pink, reference)
    assert domain.startswith("histo-") and distance > limit


def test_reference_of_a_kind_training_lacks_is_infinitely_far(dataset):
    from preprocessing.domains import domain_reference, reference_distance

    features, truth = dataset
    fluo = {i: f for i, f in features.items() if truth[i].startswith("fluo")}
    reference = domain_reference(fluo, assign_domains(fluo, n_domains=2))
    assert reference_distance(image_features(*synthetic("bright", seed=5)), reference) == (None, float("inf"), 0.0)


def test_a_file_that_is_no_reference_is_refused(tmp_path):
    from preprocessing.domains import load_reference

    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(NucleiError, match="x.json"):
        load_reference(tmp_path / "x.json")
