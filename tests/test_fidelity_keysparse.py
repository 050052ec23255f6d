"""Issue 10, Key-Sparse Transformer: the public code's protocol is the default, each other reading a named
setting (sercore.fidelity.KEYSPARSE). Fixed-length input and batch independence, the code's frozen random
positions and value without positions, its padding, the first-frames training crop and the per-epoch cosine."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_train_toy import make_toy_data, toy_settings  # noqa: E402

from sercore import attention  # noqa: E402
from sercore.fidelity import KEYSPARSE  # noqa: E402
from sercore.models import build_model, model_options  # noqa: E402
from sercore.models.ks_transformer import CODE_TABLE_LENGTH, Stack, fixed_length, sinusoidal_positions  # noqa: E402
from sercore.profiles import section  # noqa: E402
from sercore.provenance import seed_everything  # noqa: E402
from sercore.train.datasets import CropItems, EvalItems  # noqa: E402
from sercore.train.settings import TrainSettings, resolve  # noqa: E402
from sercore.train.trainer import Trainer, make_optimizer  # noqa: E402

F_SPEECH, F_TEXT = 6, 5
TINY = dict(speech="logmel", speech_dim=F_SPEECH, text_dim=F_TEXT, audio_width=8, text_width=8, audio_ffn=8,
            text_ffn=8, heads=2, encoder_layers=1, ccab_layers=1, final_layers=1)
# Short fixed lengths keep the tests fast; the property under test does not depend on 460 / 20.
SHORT = dict(max_frames=24, max_tokens=6)


def padded_batch(speech_lengths, text_lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    t, n = max(speech_lengths), max(text_lengths)
    speech = torch.randn(len(speech_lengths), t, F_SPEECH, generator=g)
    text = torch.randn(len(text_lengths), n, F_TEXT, generator=g)
    speech_mask = torch.arange(t)[None] < torch.tensor(speech_lengths)[:, None]
    text_mask = torch.arange(n)[None] < torch.tensor(text_lengths)[:, None]
    # what a batch holds in its padding must not matter: fill it with noise, not zeros
    return {"speech": speech, "speech_mask": speech_mask, "text": text, "text_mask": text_mask,
            "label": torch.zeros(len(speech_lengths), dtype=torch.long)}


def alone(batch, i):
    s, n = int(batch["speech_mask"][i].sum()), int(batch["text_mask"][i].sum())
    return {"speech": batch["speech"][i:i + 1, :s], "text": batch["text"][i:i + 1, :n]}


# ---------------------------------------------------------------- 2. fixed length, batch independence

def test_defaults_are_the_codes_fixed_length():
    options = model_options("ks-transformer")
    assert (options["max_frames"], options["max_tokens"]) == (460, 20)
    assert (options["padding"], options["positions"], options["encoder_attention"]) == ("code", "code", "code")


def test_fixed_length_keeps_the_first_steps_and_zero_pads():
    x = torch.arange(1.0, 11.0).view(1, 10, 1).repeat(2, 1, 1)
    mask = torch.tensor([[True] * 10, [True] * 4 + [False] * 6])
    cut, cut_mask = fixed_length(x, mask, 6)
    assert cut[:, :, 0].tolist() == [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 0, 0]]  # first frames; padding zeroed
    assert cut_mask.tolist() == [[True] * 6, [True] * 4 + [False] * 2]
    padded, padded_mask = fixed_length(x[:1, :3], mask[:1, :3], 5)
    assert padded[0, :, 0].tolist() == [1, 2, 3, 0, 0] and padded_mask[0].tolist() == [True] * 3 + [False] * 2


@pytest.mark.parametrize("variant", [{}, {"padding": "masked"}, {"positions": "sinusoidal"},
                                     {"residual_twice": False}, {"padding": "masked", "encoder_attention": "softmax"}])
@pytest.mark.parametrize("lengths", [SHORT, {}], ids=["short", "code-460-20"])
def test_output_does_not_depend_on_batch_mates(variant, lengths):
    """Eval mode: an utterance alone gives what it gets in a batch with longer and shorter mates."""
    torch.manual_seed(0)
    model = build_model("ks-transformer", **TINY, **lengths, **variant).eval()
    frames = lengths.get("max_frames", 460)
    # utterance 0 between a mate longer than max_frames (truncated) and a much shorter one
    batch = padded_batch([frames // 2, frames + 37, 5], [3, 30, 2])
    with torch.no_grad():
        together = model(batch)["logits"]
        for i in range(3):
            torch.testing.assert_close(model(alone(batch, i))["logits"], together[i:i + 1], rtol=1e-4, atol=1e-5)
        # a batch of other mates (a different padded length) changes nothing either
        other = padded_batch([frames // 2, 7], [3, 9])
        other["speech"][0], other["text"][0] = batch["speech"][0, :other["speech"].shape[1]], batch["text"][0, :9]
        torch.testing.assert_close(model(other)["logits"][:1], together[:1], rtol=1e-4, atol=1e-5)


def test_without_fixed_length_the_code_padding_depends_on_the_batch():
    """The control: max_frames=None (k from each batch's padded length) does let batch-mates change a logit."""
    torch.manual_seed(0)
    model = build_model("ks-transformer", **TINY, max_frames=None, max_tokens=None).eval()
    batch = padded_batch([12, 40, 5], [3, 8, 2])
    with torch.no_grad():
        assert not torch.allclose(model(alone(batch, 0))["logits"], model(batch)["logits"][:1], atol=1e-4)


def test_an_utterance_longer_than_max_frames_is_its_first_frames():
    torch.manual_seed(0)
    model = build_model("ks-transformer", **TINY, **SHORT).eval()
    batch = padded_batch([50], [10])
    first = {"speech": batch["speech"][:, :24], "text": batch["text"][:, :6]}
    last = {"speech": batch["speech"][:, -24:], "text": batch["text"][:, -6:]}
    with torch.no_grad():
        torch.testing.assert_close(model(batch)["logits"], model(first)["logits"])
        assert not torch.allclose(model(batch)["logits"], model(last)["logits"])


def test_first_crop_takes_the_first_frames_zero_padded_every_epoch():
    data = make_toy_data()  # 30-150 frames per utterance
    rows = data.rows("Train", "label")[:6]
    items = CropItems(data, rows, crop_frames=100, seed=0, start="first")
    for epoch in (0, 3):
        batch = items.batch(range(6), epoch)
        assert batch["speech"].shape[1] == min(100, max(data.n_frames(r) for r in rows))
        for i, row in enumerate(rows):
            n = min(100, data.n_frames(row))
            np.testing.assert_array_equal(batch["speech"][i, :n].numpy(), data.speech[row][:n])
            assert batch["speech_mask"][i].sum() == n and not batch["speech"][i, n:].any()  # zeros, not repeats
    random = CropItems(data, rows, crop_frames=100, seed=0)
    assert random.batch(range(6), 0)["speech_mask"].all()  # repetition padding, no mask: the other reading
    with pytest.raises(ValueError, match="start must be 'random' or 'first'"):
        CropItems(data, rows, 100, 0, start="middle")


# ---------------------------------------------------------------- 3. positions

def test_code_positions_are_frozen_small_random_tables():
    torch.manual_seed(0)
    model = build_model("ks-transformer", **TINY, **SHORT)
    stack = model.audio_from_text[0].cross
    for table, width in ((stack.query_positions, 8), (stack.context_positions, 8)):
        assert table.shape == (CODE_TABLE_LENGTH, width) and not table.requires_grad
        bound = math.sqrt(6 / (CODE_TABLE_LENGTH + width))  # xavier_uniform_ on [2000, width]
        assert table.abs().max() <= bound and table.abs().max() > 0.9 * bound
        assert not torch.allclose(table[:24], sinusoidal_positions(24, width), atol=0.1)
    assert abs(math.sqrt(6 / (CODE_TABLE_LENGTH + 512)) - 0.0489) < 1e-4  # the docstring's 0.049 at width 512
    # drawn by the model's initialisation: the same seed gives the same tables, another seed others
    torch.manual_seed(0)
    again = build_model("ks-transformer", **TINY, **SHORT)
    torch.manual_seed(1)
    other = build_model("ks-transformer", **TINY, **SHORT)
    assert torch.equal(again.audio_encoder.query_positions, model.audio_encoder.query_positions)
    assert not torch.equal(other.audio_encoder.query_positions, model.audio_encoder.query_positions)
    # never trained: not given to the optimizer, unchanged by a step
    optimizer = make_optimizer(model, TrainSettings(lr=0.1, progress=False))
    assert all(p.requires_grad for group in optimizer.param_groups for p in group["params"])
    before = model.audio_encoder.query_positions.clone()
    batch = padded_batch([10, 20], [3, 6])
    model.loss(batch, model(batch)).backward()
    optimizer.step()
    assert torch.equal(before, model.audio_encoder.query_positions)


def test_sinusoidal_positions_have_no_tables():
    model = build_model("ks-transformer", **TINY, **SHORT, positions="sinusoidal")
    assert not any("positions" in name for name, _ in model.named_parameters())
    code = build_model("ks-transformer", **TINY, **SHORT)
    assert sum("positions" in name for name, _ in code.named_parameters()) == 2 * (1 + 2 + 1 + 1)


def test_cross_attention_value_is_the_key_input_without_positions():
    torch.manual_seed(0)
    stack = Stack("keysparse", 1, 8, 8, 2, 0.0, context_dim=4, options={"keep_rate": 0.5})
    seen = {}

    def spy(module, args, kwargs):
        seen.update(kwargs)
    stack.layers[0].mixer.register_forward_pre_hook(spy, with_kwargs=True)
    x, context = torch.randn(2, 5, 8), torch.randn(2, 7, 4)
    stack(x, None, context, None)
    normed = stack.context_norm(context)
    torch.testing.assert_close(seen["value"], normed)
    torch.testing.assert_close(seen["context"], normed + stack.context_positions[:7])


def test_keysparse_value_input_feeds_only_the_value_projection():
    torch.manual_seed(0)
    mixer = attention.build("keysparse", 8, 2, keep_rate=0.5, context_dim=4).eval()
    x, context, value = torch.randn(2, 5, 8), torch.randn(2, 7, 4), torch.randn(2, 7, 4)
    out = mixer(x, context=context, value=value)
    weights = mixer.attention_matrix(x, context=context)  # selection from q and k only
    v = mixer.v_proj(value).view(2, 7, 2, 4).transpose(1, 2)
    expected = mixer.out_proj((weights @ v).transpose(1, 2).reshape(2, 5, 8))
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="value shape"):
        mixer(x, context=context, value=value[:, :3])


@pytest.mark.parametrize("zero_padded_queries", [True, False])
def test_memory_linear_form_takes_the_value_input_and_padded_rows_too(zero_padded_queries):
    """The CUDA path of mode="auto" (memory-linear) gives the materialized result with the new inputs."""
    torch.manual_seed(0)
    options = dict(keep_rate=0.5, context_dim=4, zero_padded_queries=zero_padded_queries)
    reference = attention.build("keysparse", 8, 2, mode="reference", **options).eval()
    blocked = attention.build("keysparse", 8, 2, mode="memory-linear", block_size=3, **options).eval()
    blocked.load_state_dict(reference.state_dict())
    x, context, value = torch.randn(2, 7, 8), torch.randn(2, 9, 4), torch.randn(2, 9, 4)
    mask = torch.arange(7)[None] < torch.tensor([[7], [4]])
    context_mask = torch.arange(9)[None] < torch.tensor([[9], [5]])
    args = dict(mask=mask, context=context, context_mask=context_mask, value=value)
    torch.testing.assert_close(blocked(x, **args), reference(x, **args), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- 4. padding, schedule

def test_code_padding_computes_padded_query_rows():
    torch.manual_seed(0)
    mixer = attention.build("keysparse", 8, 2, keep_rate=0.5, zero_padded_queries=False).eval()
    x, mask = torch.randn(2, 6, 8), torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    out = mixer(x, mask)
    assert out[1, 3:].abs().sum() > 0
    # a padded row is what any query gets from the real keys: the same call with every query real
    torch.testing.assert_close(out, mixer(x, None, context=x, context_mask=mask))
    zeroed = attention.build("keysparse", 8, 2, keep_rate=0.5).eval()
    zeroed.load_state_dict(mixer.state_dict())
    assert not zeroed(x, mask)[1, 3:].any()


def test_code_and_masked_padding_agree_without_padding_and_differ_with_it():
    torch.manual_seed(0)
    code = build_model("ks-transformer", **TINY, **SHORT).eval()
    masked = build_model("ks-transformer", **TINY, **SHORT, padding="masked").eval()
    masked.load_state_dict(code.state_dict())
    full = padded_batch([24, 30], [6, 8])  # no sample is padded after the fixed length
    short = padded_batch([10, 30], [2, 8])
    with torch.no_grad():
        torch.testing.assert_close(code(full)["logits"], masked(full)["logits"])
        differ = (code(short)["logits"] - masked(short)["logits"]).abs().amax(dim=1)
    assert differ[0] > 1e-4  # padded rows vote, count in the CCAB self-attention and in the mean


def test_model_option_errors_are_one_line_and_name_the_option():
    cases = [({"padding": "code", "encoder_attention": "softmax"}, "encoder_attention='softmax'"),
             ({"max_frames": 0}, "max_frames must be a positive integer"),
             ({"max_tokens": 2.5}, "max_tokens must be a positive integer"),
             ({"max_frames": 3000}, "tables of 2000 positions"),
             ({"positions": "learned"}, "positions must be one of"),
             ({"ks_options": {"zero_padded_queries": False}}, "zero_padded_queries follows padding")]
    for options, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            build_model("ks-transformer", **TINY, **options)
        assert "\n" not in str(error.value)
    model = build_model("ks-transformer", **TINY, max_frames=None).eval()
    with pytest.raises(ValueError, match="got a sequence of 2001"):
        model(padded_batch([2001], [3]))
    build_model("ks-transformer", **TINY, max_frames=3000, positions="sinusoidal")  # fine without tables


def lrs_of_a_run(tmp_path, **changes):
    data = make_toy_data()
    settings = toy_settings(schedule="cosine", eval_every=1000, **changes)
    seed_everything(0)
    from test_train_toy import ToyModel
    train = CropItems(data, data.rows("Train", "label"), 50, 0)
    dev = EvalItems(data, data.rows("Development", "label"), 16)
    lrs = []
    trainer = Trainer(ToyModel(), train, dev, settings, task="classification", checkpoint_dir=tmp_path / "c",
                      seed=0, callbacks=[lambda s, loss: lrs.append(trainer.optimizer.param_groups[0]["lr"])])
    lrs.insert(0, trainer.optimizer.param_groups[0]["lr"])
    trainer.fit()
    return lrs[:-1], trainer.sampler.steps_per_epoch  # lrs[s] = the rate step s ran at


def test_cosine_per_epoch_with_the_codes_floor(tmp_path):
    lr, epochs = 0.02, 4
    lrs, per_epoch = lrs_of_a_run(tmp_path, lr=lr, epochs=epochs, cosine_per="epoch", cosine_eta_min_ratio=0.001)
    assert len(lrs) == epochs * per_epoch == 24
    floor = lr / 1000
    for step, value in enumerate(lrs):
        e = step // per_epoch  # constant within an epoch: the code steps its scheduler after each epoch
        assert value == pytest.approx(floor + (lr - floor) * (1 + math.cos(math.pi * e / epochs)) / 2)


def test_cosine_per_step_to_zero_is_the_other_reading(tmp_path):
    lrs, per_epoch = lrs_of_a_run(tmp_path / "s", lr=0.02, epochs=4)
    total = len(lrs)
    for step, value in enumerate(lrs):
        assert value == pytest.approx(0.02 * (1 + math.cos(math.pi * step / total)) / 2, abs=1e-12)
    assert lrs[1] < lrs[0]


def test_a_resumed_per_epoch_cosine_run_ends_as_an_uninterrupted_one(tmp_path):
    from test_train import Interrupt, interrupt_at, make_trainer

    data = make_toy_data()
    cosine = dict(schedule="cosine", cosine_per="epoch", cosine_eta_min_ratio=0.001)
    whole = make_trainer(tmp_path / "a", data, **cosine)
    expected = whole.fit()
    with pytest.raises(Interrupt):  # checkpoints every 5 steps; an epoch is 6 steps: resumes mid-epoch
        make_trainer(tmp_path / "b", data, callbacks=[interrupt_at(13)], **cosine).fit()
    resumed = make_trainer(tmp_path / "b", data, **cosine)
    result = resumed.fit()
    assert result["resumed_at_step"] == 10 and result["history"] == expected["history"]
    assert resumed.optimizer.param_groups[0]["lr"] == whole.optimizer.param_groups[0]["lr"]


def test_schedule_and_crop_settings_are_checked():
    for key, value in (("cosine_per", "batch"), ("cosine_eta_min_ratio", 1.0), ("train_crop", "last")):
        with pytest.raises(ValueError, match=f"train setting {key}="):
            TrainSettings(**{key: value})


# ---------------------------------------------------------------- registry and profiles

def test_every_keysparse_entry_default_is_where_it_says():
    by_study = section("paper", "train")["by_study"]["ks-transformer"]
    options = model_options("ks-transformer")
    paper_model = section("paper", "model")["ks-transformer"]
    assert KEYSPARSE and {d.study for d in KEYSPARSE} == {"ks-transformer"}
    for entry in KEYSPARSE:
        kind, *path = entry.setting.split(".")
        if kind == "model":
            assert path[0] == "ks-transformer" and options[path[1]] == entry.default, entry.setting
            assert paper_model.get(path[1], entry.default) == entry.default, entry.setting
        else:
            assert kind == "train" and path[:2] == ["by_study", "ks-transformer"], entry.setting
            assert by_study[path[2]] == entry.default, entry.setting
            for profile, value in entry.profiles.items():
                assert getattr(resolve(profile, "ks-transformer"), path[2]) == value, (entry.setting, profile)
        assert entry.default not in entry.alternatives and entry.code, entry.setting


def test_profiles_crop_is_the_models_fixed_length():
    """Training crops hold exactly max_frames frames: 9.2 s at 50/s SSL (paper), 4.6 s at 100/s log-Mel."""
    for profile, fps in (("paper", 50.0), ("default", 100.0), ("smoke", 100.0)):
        settings = resolve(profile, "ks-transformer")
        max_frames = (section(profile, "model").get("ks-transformer") or {}).get("max_frames", 460)
        assert settings.train_crop == "first" and round(settings.crop_seconds * fps) == max_frames, profile
    paper = resolve("paper", "ks-transformer")
    assert (paper.schedule, paper.cosine_per, paper.cosine_eta_min_ratio) == ("cosine", "epoch", 0.001)
    assert (paper.optimizer, paper.lr, paper.batch_size, paper.class_weights) == ("sgd", 5e-4, 32, False)
    assert resolve("paper", "fusion").train_crop == "random"  # the other studies keep the main paper's crop


def test_a_smoke_run_trains_the_ks_transformer_on_first_frames(tmp_path):
    """End to end through train_run: the smoke profile's ks-transformer settings reach CropItems and the model."""
    import soundfile as sf

    from sercore.train import train_run

    rng = np.random.default_rng(0)
    (tmp_path / "corpus" / "wav").mkdir(parents=True)
    lines = ["path,label,split,speaker,gender,transcript"]
    for split, n in {"Train": 8, "Development": 4, "Test1": 4}.items():
        for i in range(n):
            name = f"wav/{split}_{i}.wav"
            seconds = 0.3 + 0.1 * i
            sf.write(tmp_path / "corpus" / name, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32),
                     16000)
            lines.append(f"{name},{('ang', 'hap')[i % 2]},{split},spk{i % 2},{('Female', 'Male')[i % 2]},"
                         f"word {i} of {split}")
    (tmp_path / "corpus" / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    seen = []
    original = CropItems.batch

    def spy(self, items, epoch):
        seen.append((self.start, self.crop_frames))
        return original(self, items, epoch)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CropItems, "batch", spy)
        result = train_run("ks-transformer", tmp_path / "corpus" / "manifest.csv", tmp_path / "run", profile="smoke",
                           seed=0, max_steps=2, eval_every=1, n_boot=10, progress=False, device="cpu", batch_size=4,
                           cache_dir=str(tmp_path / "cache"))
    assert seen and set(seen) == {("first", 460)}
    assert result["training"]["steps"] == 2 and 0 <= result["splits"]["Test1"]["balanced_accuracy"]["value"] <= 1


# ---------------------------------------------------------------- the CPU profiles' classifier

def test_classifier_option_is_the_codes_mlp_or_one_linear_layer():
    code = build_model("ks-transformer", **TINY, n_classes=4)
    linear = build_model("ks-transformer", **TINY, n_classes=4, classifier="linear", classifier_dropout=0.2)
    assert [type(m).__name__ for m in code.classifier] == ["Linear", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert [type(m).__name__ for m in linear.classifier] == ["Dropout", "Linear"]
    assert linear.classifier[0].p == 0.2 and linear.classifier[1].in_features == 16
    with pytest.raises(ValueError, match="classifier must be one of"):
        build_model("ks-transformer", **TINY, classifier="mlp")


def _separable_batches(n, classes, seed):
    """Text whose token mean encodes the class; speech noise. [n] samples, fixed lengths."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, F_TEXT, generator=g)
    text = centres[labels][:, None, :] + 0.5 * torch.randn(n, SHORT["max_tokens"], F_TEXT, generator=g)
    speech = torch.randn(n, SHORT["max_frames"], F_SPEECH, generator=g)
    return {"speech": speech, "text": text, "label": labels}


@pytest.mark.parametrize("profile", ["smoke", "default"])
def test_the_cpu_profiles_ks_transformer_learns_a_separable_signal(profile):
    """The CPU profiles' shape of the model (its widths, depth and classifier) must learn within the few hundred
    steps a CPU run has: with the code's three-layer MLP head the default-profile model stayed at ln(8) for 300
    steps on the generated corpus (sercore.fidelity, model.ks-transformer.classifier)."""
    options = {**section(profile, "model")["ks-transformer"], **SHORT, "speech_dim": F_SPEECH, "text_dim": F_TEXT,
               "n_classes": 4}
    seed_everything(0)
    model = build_model("ks-transformer", **options)
    data = _separable_batches(64, 4, seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    for step in range(60):
        rows = torch.randperm(64)[:16]
        batch = {key: value[rows] for key, value in data.items()}
        loss = model.loss(batch, model(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(data)["logits"].argmax(-1) == data["label"]).float().mean().item()
    assert accuracy > 0.9, f"{profile}: training accuracy {accuracy:.2f} after 60 steps"
