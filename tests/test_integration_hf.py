"""AWP in the Hugging Face Trainer: a tiny randomly initialised BERT (2 layers, hidden 32; no
download) trained a few steps with the integration ends with the weights of the same steps
written as a plain loop with the library's perturbation, float64 on the CPU, with and without
gradient accumulation, with max_grad_norm; checkpoints carry the perturbation and a resume
with another is refused."""

import copy
import json

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")

import torchawp  # noqa: E402
from torchawp.errors import ConfigError  # noqa: E402
from torchawp.integrations import TRANSFORMER_RULES, parameter_report  # noqa: E402
from torchawp.integrations.hf import STATE_FILE, PerturbedTrainer  # noqa: E402

STEPS, BATCH, LR, CLIP = 3, 4, 0.05, 1.0


def tiny_bert():
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=37,
                                     max_position_embeddings=16, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0, num_labels=3)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).double()


class Rows(torch.utils.data.Dataset):
    def __init__(self, n=48, length=8):
        g = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, 50, (n, length), generator=g)
        self.labels = torch.randint(0, 3, (n,), generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


class InOrder(PerturbedTrainer):
    """The data in order, so that the plain loop can see the same batches; each micro-batch's
    loss divided by the accumulation steps (the plain loop's; the Trainer would otherwise
    count on BERT's classification loss to use num_items_in_batch, which it ignores)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)


def args(tmp_path, accumulation, **more):
    settings = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=BATCH, max_steps=STEPS,
        gradient_accumulation_steps=accumulation, learning_rate=LR, optim="sgd",
        lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=CLIP, report_to=[],
        save_strategy="no", logging_strategy="no", use_cpu=True, seed=0,
        dataloader_num_workers=0, disable_tqdm=True)
    return transformers.TrainingArguments(**{**settings, **more})


def plain_loop(model, data, make, accumulation):
    """The steps as a plain loop with the library class: per micro-batch v from that
    micro-batch's loss at w, backward at w + v (the loss over the accumulation), back to w
    except before the step, clipping, the step, back to w."""
    wp = make(model)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    model.train()
    rows = iter(range(len(data)))
    for _ in range(STEPS):
        for micro in range(accumulation):
            idx = [next(rows) for _ in range(BATCH)]
            batch = {"input_ids": data.ids[idx], "labels": data.labels[idx]}
            wp.perturb(lambda m: m(**batch).loss)
            (model(**batch).loss / accumulation).backward()
            if micro < accumulation - 1:
                wp.restore()
        wp.before_step()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        wp.restore()
        opt.zero_grad()
    return model


@pytest.mark.parametrize("accumulation", [1, 2])
@pytest.mark.parametrize("make", [lambda m: torchawp.AWP(m, gamma=0.01),
                                  lambda m: torchawp.PractitionersAWP(m, adv_lr=0.5,
                                                                      adv_eps=0.01)],
                         ids=["awp", "awp-practitioners"])
def test_the_trainer_takes_the_plain_loops_steps(tmp_path, accumulation, make, capsys):
    model, data = tiny_bert(), Rows()
    reference = plain_loop(copy.deepcopy(model), data, make, accumulation)
    trainer = InOrder(model=model, args=args(tmp_path, accumulation), train_dataset=data,
                      perturbation=make)
    trainer.train()
    ours, theirs = dict(model.named_parameters()), dict(reference.named_parameters())
    worst = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
    assert worst < 1e-10, worst
    assert trainer.perturbation._v is None  # back at w after the last step
    moved = tiny_bert()  # and the weights did move: the comparison is not of two idle models
    assert any(not torch.equal(ours[k], v) for k, v in moved.named_parameters())
    assert "perturbs" in capsys.readouterr().out  # the parameter report, once


def test_awp_on_bert_perturbs_embeddings_and_linears_once_each_and_says_so():
    model = tiny_bert()
    awp = torchawp.AWP(model, gamma=0.01)
    names = [n for n, _ in awp.named_params]
    assert "bert.embeddings.word_embeddings.weight" in names
    assert "classifier.weight" in names
    assert not any("LayerNorm" in n or n.endswith("bias") for n in names)
    report = parameter_report(model, awp)
    assert "embeddings 3" in report and "LayerNorm" in report.split("leaves")[1]
    attention_only = torchawp.AWP(model, gamma=0.01, params=TRANSFORMER_RULES["attention"])
    assert all(".attention." in n for n, _ in attention_only.named_params)
    assert len(attention_only.params) == 2 * 4  # query, key, value, output per layer

    class Tied(torch.nn.Module):  # one tensor under two names: perturbed once
        def __init__(self):
            super().__init__()
            self.inp = torch.nn.Embedding(10, 4)
            self.out = torch.nn.Linear(4, 10, bias=False)
            self.out.weight = self.inp.weight

        def forward(self, x):
            return self.out(self.inp(x))

    tied = Tied()
    assert len(torchawp.AWP(tied, gamma=0.01).params) == 1


def test_checkpoints_carry_the_perturbation_and_resume_refuses_another(tmp_path):
    data = Rows()
    trainer = InOrder(model=tiny_bert(), args=args(tmp_path, 1, save_strategy="steps",
                                                   save_steps=STEPS), train_dataset=data,
                      perturbation=lambda m: torchawp.AWP(m, gamma=0.01))
    trainer.train()
    saved = tmp_path / f"checkpoint-{STEPS}" / STATE_FILE
    state = json.loads(saved.read_text())
    assert state["class"] == "AWP" and state["settings"]["gamma"] == 0.01
    other = InOrder(model=tiny_bert(), args=args(tmp_path, 1, max_steps=STEPS + 1),
                    train_dataset=data, perturbation=lambda m: torchawp.AWP(m, gamma=0.02))
    with pytest.raises(ConfigError, match="gamma"):
        other.train(resume_from_checkpoint=str(saved.parent))
    same = InOrder(model=tiny_bert(), args=args(tmp_path, 1, max_steps=STEPS + 1),
                   train_dataset=data, perturbation=lambda m: torchawp.AWP(m, gamma=0.01))
    same.train(resume_from_checkpoint=str(saved.parent))
    assert same.state.global_step == STEPS + 1


def test_rwp_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match="per-example"):
        PerturbedTrainer(model=tiny_bert(), args=transformers.TrainingArguments(
            output_dir="/tmp/unused", report_to=[], use_cpu=True),
            perturbation=lambda m: torchawp.RWP(m))


def test_mixed_precision_through_accelerate_still_trains(tmp_path):
    """bf16 autocast (the CPU's mixed precision; fp16 needs a GPU): the ascent runs under the
    Trainer's autocast, the weights move, v is gone after the run."""
    model = tiny_bert().float()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = InOrder(model=model, args=args(tmp_path, 2, bf16=True), train_dataset=Rows(),
                      perturbation=lambda m: torchawp.AWP(m, gamma=0.01))
    trainer.train()
    assert trainer.perturbation._v is None
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in start.items())
