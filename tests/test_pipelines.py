"""`oss-fast search --pipeline` on tiny random-weight diffusers pipelines saved to a folder, through the
CLI: the schedule it writes lands on the pipeline's grid, its recipe reproduces oss_fast.sample in the
pipeline, and an interrupted search resumed equals an uninterrupted one."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from checkout import checkout_env  # noqa: E402
from pipelines import FAMILIES, SIZES, VOCAB, save_tiny_pipeline  # noqa: E402

import oss_fast  # noqa: E402
from oss_fast import Schedule, cli  # noqa: E402
from oss_fast.api import schedule_steps  # noqa: E402
from oss_fast.engine import search as engine_search  # noqa: E402
from oss_fast.integrations import pipelines  # noqa: E402

N, K = 12, 3
PROMPTS = [" ".join(VOCAB[:3]), " ".join(VOCAB[3:6])]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """family -> the folder of its tiny pipeline (saved once for the module)."""
    root = tmp_path_factory.mktemp("pipelines")
    return {family: save_tiny_pipeline(family, root / family) for family in FAMILIES}


def size_args(family):
    size = SIZES[family]
    args = [] if family == "dit" else ["--height", str(size["height"]), "--width", str(size["width"])]
    return args + (["--frames", str(size["frames"])] if "frames" in size else [])


def conditioning(family):
    if family == "dit":
        return ["--class-labels", "1,3"]
    return [arg for prompt in PROMPTS for arg in ("--prompt", prompt)]


def search_args(family, folder, out, *extra):
    return ["search", "--pipeline", str(folder), *conditioning(family), *size_args(family), "--teacher-steps", str(N),
            "--student-steps", str(K), "--samples", "2", "--device", "cpu", "--no-progress", "--preview", "1",
            "--out", str(out), *extra]


def job_of(family, folder):
    """The CLI's inputs for the family, built the way the CLI builds them."""
    args = cli.parser().parse_args(search_args(family, folder, "unused"))
    pipe = pipelines.load_pipeline(str(folder), torch.float32, "cpu")
    return pipe, pipelines.prepare(pipe, str(folder), cli.pipeline_request(args), N)


@pytest.mark.parametrize("family", FAMILIES)
def test_search_writes_a_schedule_on_the_pipeline_grid_and_its_exports(family, saved, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(search_args(family, saved[family], out)) == 0
    printed = capsys.readouterr().out
    # the plan comes before the search: rows against the published search's, and a timed call
    plan = printed.index("model rows: at most about")
    assert plan < printed.index("one model call of") < printed.index("schedule (grid indices)")
    assert f"of the published search's {N * (K + 1) * 4} = N (K + 1) x 4" in printed
    schedule = Schedule.load(out / "schedule.json")
    _, job = job_of(family, saved[family])
    grid = job.model.fm_steps
    steps = schedule_steps(schedule, torch.as_tensor(grid, dtype=torch.float64))
    assert len(steps) == K and [grid[i].item() for i in reversed(steps)] == pytest.approx(schedule.sigmas[:-1])
    meta = schedule.metadata
    assert meta["pipeline"] == job.pipeline_class and meta["source"] == str(saved[family])
    assert meta["prompts_sha256"] == job.settings["prompts_sha256"] and meta["samples_per_prompt"] == 2
    if family != "dit":
        assert meta["size"] == [SIZES[family]["height"], SIZES[family]["width"]]
        comfy = json.loads((out / "comfyui_sigmas.json").read_text())
        assert comfy == pytest.approx(schedule.sigmas)
        recipe = json.loads((out / "diffusers.json").read_text())
        assert recipe["num_inference_steps"] == K
    if family in ("sd3", "wan"):
        assert schedule.shift == pytest.approx(job.settings["shift"])
    preview = json.loads((out / "preview.json").read_text())
    assert set(preview["psnr_to_teacher"]) == {"oss", "default"} and len(preview["psnr_to_teacher"]["oss"]) == 1
    assert (out / "search.ckpt").is_file() and (out / "recipe.py").is_file()


def test_the_prompts_hash_follows_the_prompts():
    one = pipelines._digest(pipelines.Request(prompts=["a b"]))
    assert one != pipelines._digest(pipelines.Request(prompts=["a c"]))
    assert one != pipelines._digest(pipelines.Request(prompts=["a b"], negative_prompt="x"))


def load_recipe(path):
    spec = importlib.util.spec_from_file_location("recipe_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("family", ["flux", "sd3", "wan"])
def test_the_recipe_reproduces_oss_fast_sample_in_the_pipeline(family, saved, tmp_path):
    out = tmp_path / "run"
    assert cli.main(search_args(family, saved[family], out, "--preview", "0")) == 0
    recipe = load_recipe(out / "recipe.py")
    pipe = recipe.load_pipeline(torch.float32, "cpu")
    _, job = job_of(family, saved[family])
    schedule = Schedule.load(out / "schedule.json")
    z, cond, kwargs = job.rows(slice(0, 1))  # the first prompt's first noise
    ours = oss_fast.sample(job.model, z, schedule, cond, model_kwargs=kwargs)
    theirs = recipe.generate(pipe, PROMPTS[0], latents=z.clone(), output_type="latent")
    latents = theirs.images if hasattr(theirs, "images") else theirs.frames
    torch.testing.assert_close(latents.float(), ours, atol=2e-4, rtol=2e-4)


def test_the_dit_recipe_reproduces_oss_fast_sample_in_the_pipeline(saved, tmp_path):
    out = tmp_path / "run"
    assert cli.main(search_args("dit", saved["dit"], out, "--preview", "0")) == 0
    recipe = load_recipe(out / "recipe.py")
    pipe = recipe.load_pipeline(torch.float32, "cpu")
    _, job = job_of("dit", saved["dit"])
    schedule = Schedule.load(out / "schedule.json")
    noise = torch.randn(1, *job.z.shape[1:], generator=torch.Generator().manual_seed(7))  # DiTPipeline's draw
    # DiTPipeline's unit noise is in its variance-preserving space: our flow latent times (alpha + sigma)
    acp = pipe.scheduler.alphas_cumprod[int(schedule.timesteps[0])].double()
    z = noise / float(acp.sqrt() + (1 - acp).sqrt())
    ours = job.decode(oss_fast.sample(job.model, z, schedule, torch.tensor([1])))
    theirs = recipe.generate(pipe, 1, generator=torch.Generator().manual_seed(7), output_type="pt")
    torch.testing.assert_close(torch.as_tensor(theirs.images).float().reshape(ours.shape), ours, atol=1e-3, rtol=1e-3)


def test_an_interrupted_search_resumed_equals_an_uninterrupted_one(saved, tmp_path, monkeypatch, capsys):
    whole = tmp_path / "whole"
    assert cli.main(search_args("flux", saved["flux"], whole, "--preview", "0")) == 0
    real = engine_search.Engine.refined
    calls = []

    def interrupted(self, *args, **kwargs):  # Ctrl-C after the teacher ran and its checkpoint was written
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_search.Engine, "refined", interrupted)
    cut = tmp_path / "cut"
    assert cli.main(search_args("flux", saved["flux"], cut, "--preview", "0")) == 130
    assert calls and (cut / "search.ckpt").is_file() and not (cut / "schedule.json").exists()
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(engine_search.Engine, "refined", real)
    assert cli.main(search_args("flux", saved["flux"], cut, "--preview", "0", "--resume")) == 0
    assert "resumed after the teacher rollout" in capsys.readouterr().out
    assert Schedule.load(cut / "schedule.json").indices == Schedule.load(whole / "schedule.json").indices


def test_a_missing_folder_or_id_is_one_line_exit_2_without_the_network(tmp_path):
    # a hub that cannot answer: a download attempt would fail slowly or hang, not with our line
    env = dict(os.environ, HF_ENDPOINT="http://10.255.255.1:9", HF_HUB_ETAG_TIMEOUT="60")
    for source, said in ((str(tmp_path / "nowhere"), "no such folder"), ("nobody/no-such-model", "never downloads")):
        result = subprocess.run([sys.executable, "-m", "oss_fast", "search", "--pipeline", source, "--prompt", "a cat",
                                 "--device", "cpu"], capture_output=True, text=True, timeout=60,
                                env=checkout_env(env))
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and said in result.stderr, result.stderr
    assert not (tmp_path / "oss_fast_out").exists()


def test_other_pipelines_are_refused_naming_the_supported_ones(tmp_path):
    folder = tmp_path / "sdxl"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    with pytest.raises(ValueError, match="StableDiffusionXLPipeline: supported are FLUX .*SD3.*Wan.*DiT"):
        pipelines.load_pipeline(str(folder), torch.float32, "cpu")
    (folder / "model_index.json").unlink()
    with pytest.raises(ValueError, match="no model_index.json"):
        pipelines.load_pipeline(str(folder), torch.float32, "cpu")


@pytest.mark.parametrize("extra, message", [
    (["--class-labels", "1"], "takes prompts"),
    (["--frames", "5"], "--frames is for video"),
])
def test_asks_that_do_not_fit_the_pipeline_are_refused(extra, message, saved, tmp_path, capsys):
    assert cli.main(search_args("flux", saved["flux"], tmp_path / "o", *extra)) == 2
    assert message in capsys.readouterr().err


def test_pipeline_options_need_a_pipeline_and_bundled_options_refuse_one(saved, tmp_path, capsys):
    assert cli.main(["search", "--prompt", "a cat", "--out", str(tmp_path / "a")]) == 2
    assert "--prompt is for --pipeline searches" in capsys.readouterr().err
    assert cli.main(search_args("flux", saved["flux"], tmp_path / "b", "--shift", "3")) == 2
    assert "--shift is for the bundled models" in capsys.readouterr().err
    assert cli.main(["search", "--pipeline", str(saved["flux"]), "--out", str(tmp_path / "c")]) == 2
    assert "needs at least one prompt" in capsys.readouterr().err


def test_prompts_file_and_per_prompt_samples(saved, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(f"{PROMPTS[0]}\n\n{PROMPTS[1]}\n{VOCAB[0]}\n")
    args = cli.parser().parse_args(["search", "--pipeline", str(saved["sd3"]), "--prompts", str(prompts),
                                    "--samples", "3", *size_args("sd3")])
    pipe = pipelines.load_pipeline(str(saved["sd3"]), torch.float32, "cpu")
    job = pipelines.prepare(pipe, str(saved["sd3"]), cli.pipeline_request(args), N)
    assert job.prompts == [PROMPTS[0], PROMPTS[1], VOCAB[0]] and len(job.z) == 9
    # rows follow the prompts: a prompt's noises share its embedding, the next prompt's differs
    assert torch.equal(job.cond[0], job.cond[2]) and not torch.equal(job.cond[2], job.cond[3])
    assert pipe.text_encoder is None and pipe.text_encoder_3 is None  # freed once the prompts are encoded
