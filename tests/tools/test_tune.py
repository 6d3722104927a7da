"""tools.tune end to end: domains of the validation images, the cross-domain check, the file written."""

import json

from preprocessing.domains import save_domains
from tools.inference.params import load_params
from tools.inference.tuning import validation_samples
from tools.tune import main


def test_tune_reports_held_out_domains_and_writes_loadable_params(sample_root, sample_dataset, tmp_path, capsys):
    val_ids = [s.image_id for s in validation_samples([sample_root], val_fraction=0.34)]
    domains = {s.image_id: "second" for s in sample_dataset.samples}
    domains.update({image_id: ("first" if k % 2 else "second") for k, image_id in enumerate(val_ids)})
    save_domains(tmp_path / "domains.json", domains)
    out = tmp_path / "params.json"
    assert main(["--model", "mrcnn", "--data", str(sample_root), "--val-fraction", "0.34", "--rounds", "1",
                 "--domains", str(tmp_path / "domains.json"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "held-out domains (leave one domain out, 2 folds)" in printed
    report = json.loads(out.read_text())["tuning"]
    assert report["objective"] == "domain-balanced mean" and report["space"] == "small"
    assert set(report["cross_domain"]["per_domain"]) == {"first", "second"}
    params = load_params(out)
    if not report["accepted"]:  # the defaults are written, and said so
        assert "writing the defaults" in printed
        assert params.postprocess.to_dict() == type(params.postprocess)().to_dict()


def test_tune_with_a_domain_file_lacking_validation_images_exits_2(sample_root, tmp_path, capsys):
    save_domains(tmp_path / "domains.json", {"someone-else": "x"})
    assert main(["--model", "mrcnn", "--data", str(sample_root), "--domains", str(tmp_path / "domains.json"),
                 "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "domains.json" in err[0] and "not in this domain file" in err[0]
