"""Merge several instance predictions of one image into one (pure numpy).

Used for Mask R-CNN test-time augmentation (one prediction per transform, already
mapped back to the original frame) and for any other set of votes on the same image.

Each prediction is ``(labels int [H, W], scores float [max id])``: a label image whose
ids index ``scores`` (id k has ``scores[k - 1]``; ids may be missing). Per-instance
masks are derived from the label images, so a predictor that only returns labels and
scores is enough.

Steps:
1. Mask IoU of every pair of instances from different predictions (one contingency
   count over the foreground pixels per pair of predictions, no loop over nuclei).
2. Clusters, greedily: the highest-scoring unassigned instance seeds a cluster and takes,
   from every other prediction, its best-overlapping unassigned instance with
   IoU > ``cluster_iou``.
3. Votes: a cluster found by fewer than ``min_agreement`` of the predictions is dropped;
   a pixel belongs to a cluster where at least ``pixel_vote`` of its members cover it.
   The cluster's score is the sum of its members' scores over the number of predictions
   (a prediction that missed the nucleus counts as score 0).
4. Overlaps between clusters are resolved by score: the higher score keeps the pixel.
"""

import math

import numpy as np

from preprocessing.labels import compact


def _instances(predictions):
    """Global numbering of every instance: (variant [G], local id [G], scores [G], per-variant lookups)."""
    variants, local_ids, scores, lookups = [], [], [], []
    offset = 0
    for v, (labels, instance_scores) in enumerate(predictions):
        instance_scores = np.asarray(instance_scores, np.float32).ravel()
        high = int(labels.max()) if labels.size else 0
        present = np.flatnonzero(np.bincount(labels.ravel(), minlength=high + 1)[1:]) + 1
        lookup = np.full(high + 1, -1, np.int64)
        lookup[present] = offset + np.arange(present.size)
        lookups.append(lookup)
        variants.append(np.full(present.size, v))
        local_ids.append(present)
        padded = np.zeros(high, np.float32)
        padded[:min(high, instance_scores.size)] = instance_scores[:high]
        scores.append(padded[present - 1] if present.size else np.zeros(0, np.float32))
        offset += present.size
    return (np.concatenate(variants) if variants else np.zeros(0, int), np.concatenate(scores),
            lookups)


def _pairwise_iou(global_maps, n_instances):
    """IoU > 0 pairs between instances of different predictions: (i [P], j [P], iou [P]), i < j."""
    areas = np.zeros(n_instances, np.int64)
    for g in global_maps:
        areas += np.bincount(g[g >= 0], minlength=n_instances)
    rows, cols, ious = [], [], []
    for a in range(len(global_maps)):
        for b in range(a + 1, len(global_maps)):
            both = (global_maps[a] >= 0) & (global_maps[b] >= 0)
            if not both.any():
                continue
            keys = global_maps[a][both] * n_instances + global_maps[b][both]
            keys, inter = np.unique(keys, return_counts=True)
            i, j = keys // n_instances, keys % n_instances
            rows.append(i)
            cols.append(j)
            ious.append(inter / (areas[i] + areas[j] - inter))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), areas
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(ious), areas


def merge_instances(predictions, cluster_iou=0.5, min_agreement=0.5, pixel_vote=0.5):
    """Merge instance predictions of one image.

    Args:
        predictions: list of V pairs (labels int [H, W], scores float [max id]), same H, W.
        cluster_iou: two instances of different predictions may join a cluster above this IoU.
        min_agreement: keep clusters found by at least ceil(min_agreement * V) predictions.
        pixel_vote: a pixel joins a cluster when at least this share of its members cover it.

    Returns:
        (labels int32 [H, W] ids 1..N, scores float32 [N]).
    """
    if not predictions:
        raise ValueError("nothing to merge")
    shape = predictions[0][0].shape
    n_variants = len(predictions)
    variant_of, scores, lookups = _instances(predictions)
    n_instances = variant_of.size
    if n_instances == 0:
        return np.zeros(shape, np.int32), np.zeros(0, np.float32)
    foreground = np.zeros(shape, bool)
    for labels, _ in predictions:
        foreground |= labels > 0
    pixels = np.flatnonzero(foreground)
    global_maps = [lookup[labels.ravel()[pixels]] for lookup, (labels, _) in zip(lookups, predictions)]
    rows, cols, ious, areas = _pairwise_iou(global_maps, n_instances)

    # Greedy clustering, best-scoring seeds first.
    strong = ious > cluster_iou
    pair_i = np.concatenate([rows[strong], cols[strong]])
    pair_j = np.concatenate([cols[strong], rows[strong]])
    pair_iou = np.concatenate([ious[strong], ious[strong]])
    order = np.lexsort((-pair_iou, pair_i))
    pair_i, pair_j = pair_i[order], pair_j[order]
    starts = np.searchsorted(pair_i, np.arange(n_instances + 1))
    cluster_of = np.full(n_instances, -1, np.int64)
    members = []
    for seed in np.lexsort((-areas, -scores)):
        if cluster_of[seed] >= 0:
            continue
        cluster = [seed]
        used = {variant_of[seed]}
        for other in pair_j[starts[seed]:starts[seed + 1]]:
            if cluster_of[other] < 0 and variant_of[other] not in used:
                cluster.append(other)
                used.add(variant_of[other])
        cluster_of[cluster] = len(members)
        members.append(cluster)
    n_clusters = len(members)
    size = np.array([len(m) for m in members])
    cluster_score = np.array([scores[m].sum() for m in members], np.float64) / n_variants
    keep = size >= max(1, math.ceil(min_agreement * n_variants - 1e-9))
    need = np.maximum(1, np.ceil(pixel_vote * size - 1e-9)).astype(np.int64)

    # Pixel votes: count, for each (pixel, cluster), the members covering the pixel.
    keys = []
    for g in global_maps:
        hit = g >= 0
        c = cluster_of[g[hit]]
        kept = keep[c]
        keys.append(np.flatnonzero(hit)[kept] * n_clusters + c[kept])
    keys, votes = np.unique(np.concatenate(keys), return_counts=True)
    position, cluster = keys // n_clusters, keys % n_clusters
    won = votes >= need[cluster]
    position, cluster = position[won], cluster[won]
    # Overlaps: for each pixel the highest-scoring cluster (lowest index on ties) keeps it.
    order = np.lexsort((cluster, -cluster_score[cluster], position))
    position, cluster = position[order], cluster[order]
    first = np.ones(position.size, bool)
    first[1:] = position[1:] != position[:-1]
    labels = np.zeros(shape, np.int64)
    labels.ravel()[pixels[position[first]]] = cluster[first] + 1
    return compact(labels, cluster_score.astype(np.float32))
