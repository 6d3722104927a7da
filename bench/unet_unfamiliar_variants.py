"""U-Net: which params for the images tools.predict flags as unfamiliar? (session 27; shipped params vs
8-way TTA tuned / defaults / single defaults on the flagged images of the sample, shifted val, shifted
sample seeds 1-3).  python bench/unet_unfamiliar_variants.py unet"""
import sys, json
from pathlib import Path
import numpy as np
ROOT = Path(__file__).resolve().parents[1]; sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
from protocols import shift_sample
from preprocessing.dataset import load_training_samples
from preprocessing.domains import load_reference
from tools.inference.folder import unfamiliar_image
from tools.inference.models import build_pipeline
from tools.inference.params import InferenceParams, load_params
from tools.inference.tuning import validation_set
from tools.kaggle.metric import image_score
model = sys.argv[1]
data = str(ROOT.parent / "shared/dsb2018/stage1_train"); sample_dir = str(ROOT / "data/sample/stage1_train")
val, _ = validation_set([data], exclude_roots=(sample_dir,), run_dir=ROOT / "weights", domains=str(ROOT / "bench/results/domains.json"))
sample = load_training_samples([sample_dir], progress=False)
rng = np.random.default_rng(0)
sets = {"sample": [(s.image_id, s.image, s.labels) for s in sample], "shifted val": [(s.image_id, *shift_sample(s, rng)) for s in val]}
for seed in (1, 2, 3):
    rng = np.random.default_rng(seed); sets[f"shifted sample s{seed}"] = [(s.image_id, *shift_sample(s, rng)) for s in sample]
ref = load_reference(ROOT / "weights/training_domains.json")
flag = {k: [t for t in v if unfamiliar_image(t[1], ref) is not None] for k, v in sets.items()}
shipped = load_params(ROOT / f"weights/{model}.params.json")
variants = {"shipped": None,
            "tta8 tuned": load_params(ROOT / f"weights/{model}.tta8.params.json"),
            "tta8 defaults": InferenceParams(tta=8),
            "single defaults": InferenceParams(),
            "tta8 defaults+min32": InferenceParams(tta=8, postprocess={"min_size": 32}),
            }
res = {}
for name, unf in variants.items():
    params = shipped if unf is None else shipped.replace(unfamiliar=unf.replace(unfamiliar=None).to_dict())
    p = build_pipeline(model, params=params)
    line = []
    for part, items in flag.items():
        sc = [float(image_score(t, p.predict(im)[0])["score"]) for _, im, t in items]
        res.setdefault(name, {})[part] = sc
        line.append(f"{part} {np.mean(sc):.4f}")
    allsc = [x for v in res[name].values() for x in v]
    print(f"{name:22s} " + "  ".join(line) + f"  all {np.mean(allsc):.4f} (n={len(allsc)})", flush=True)
json.dump(res, open(ROOT / "bench" / "results" / f"unfamiliar_variants_{model}.json", "w"))
