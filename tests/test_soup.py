"""`python -m train.soup`: the weight average of folders fine-tuned from one base."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from train.soup import main, soup


def perturbed_copy(folder, out, seed: int):
    """`folder` with every floating tensor moved by noise: another "fine-tune" of the same base."""
    shutil.copytree(folder, out)
    generator = torch.Generator().manual_seed(seed)
    weights = load_file(str(out / "model.safetensors"))
    for name, tensor in weights.items():
        if tensor.is_floating_point():
            weights[name] = tensor + 0.05 * torch.randn(tensor.shape, generator=generator).to(tensor.dtype)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def test_a_soup_is_the_weighted_mean_of_its_ingredients_and_loads_as_a_sentence_transformer(
    tiny_nvembed_folder, tmp_path
):
    from sentence_transformers import SentenceTransformer

    a = perturbed_copy(tiny_nvembed_folder, tmp_path / "a", seed=1)
    b = perturbed_copy(tiny_nvembed_folder, tmp_path / "b", seed=2)
    save_file({"weight": torch.ones(2, 2)}, str(b / "teacher_projection.safetensors"))  # a run's loss weights
    out = soup(tmp_path / "soup", [a, b], weights=[0.25, 0.75])
    wa, wb, ws = (load_file(str(f / "model.safetensors")) for f in (a, b, out))
    assert set(ws) == set(wa) and not (out / "teacher_projection.safetensors").exists()
    for name, tensor in ws.items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor, 0.25 * wa[name] + 0.75 * wb[name], atol=1e-6), name
        assert tensor.dtype == wa[name].dtype
    record = json.loads((out / "soup.json").read_text())
    assert [i["weight"] for i in record["ingredients"]] == [0.25, 0.75] and record["method"] == "weighted"
    texts = ["compress files into a zip archive", "fonts for TeX"]
    souped = SentenceTransformer(str(out), trust_remote_code=True, device="cpu").encode(texts)
    plain_a = SentenceTransformer(str(a), trust_remote_code=True, device="cpu").encode(texts)
    assert souped.shape == plain_a.shape and not torch.allclose(torch.tensor(souped), torch.tensor(plain_a))
    same = soup(tmp_path / "same", [a, a])  # a soup of one model twice is that model
    again = SentenceTransformer(str(same), trust_remote_code=True, device="cpu").encode(texts)
    assert torch.allclose(torch.tensor(again), torch.tensor(plain_a), atol=1e-5)


def test_a_trained_folder_soups_with_its_untrained_base(tiny_nvembed_folder, tmp_path):
    """WiSE-FT (the fine-tuned weights interpolated toward the base): the two configs differ only in what saving
    records (`dtype`, `use_cache`), which is not a different architecture."""
    trained = perturbed_copy(tiny_nvembed_folder, tmp_path / "trained", seed=1)
    config = json.loads((trained / "config.json").read_text())
    config["use_cache"], config["text_config"]["use_cache"], config["text_config"]["dtype"] = False, False, "float32"
    (trained / "config.json").write_text(json.dumps(config))
    out = soup(tmp_path / "wise", [trained, tiny_nvembed_folder], weights=[0.9, 0.1])
    assert (out / "model.safetensors").is_file()
    config["text_config"]["hidden_size"] += 1  # a real difference is still refused
    (trained / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"in \['text_config'\]"):
        soup(tmp_path / "other", [trained, tiny_nvembed_folder])


def test_a_soup_refuses_unrelated_folders_bad_weights_and_an_existing_output(
    tiny_nvembed_folder, tiny_nvembed_folder_4_layers, tmp_path, capsys
):
    with pytest.raises(ValueError, match=r"config.json differs from .* in \[.text_config.\]"):
        soup(tmp_path / "x", [tiny_nvembed_folder, tiny_nvembed_folder_4_layers])
    with pytest.raises(ValueError, match="at least two"):
        soup(tmp_path / "x", [tiny_nvembed_folder])
    with pytest.raises(ValueError, match="summing to 1"):
        soup(tmp_path / "x", [tiny_nvembed_folder, tiny_nvembed_folder], weights=[0.5, 0.6])
    (tmp_path / "x").mkdir()
    with pytest.raises(FileExistsError, match="new folder"):
        soup(tmp_path / "x", [tiny_nvembed_folder, tiny_nvembed_folder])
    reshaped = shutil.copytree(tiny_nvembed_folder, tmp_path / "reshaped")
    weights = load_file(str(reshaped / "model.safetensors"))
    name = next(n for n, t in weights.items() if t.dim() == 2)
    weights[name] = weights[name][:-1]
    save_file(weights, str(reshaped / "model.safetensors"))
    with pytest.raises(ValueError, match=name.replace(".", "\\.")):
        soup(tmp_path / "y", [tiny_nvembed_folder, reshaped])
    with pytest.raises(SystemExit, match="train.soup: .*at least two"):
        main([str(tmp_path / "z"), str(tiny_nvembed_folder)])
