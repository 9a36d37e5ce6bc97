"""Concept activation vectors: the Gram-Schmidt random sets are orthogonal to the concept
direction, the TCAV score is captum's directional-derivative count with the concept side up,
A-CAV widens the margin, concept rules select what they say, seeded runs reproduce, and bad
input is one line."""

import pytest
import torch

from torchawp.cli import main
from torchawp.studies.concepts import (ConceptClassifier, Variant, concept_study, gram_schmidt,
                               rule_members)
from torchawp.evaluation.opened import open_run

pytest.importorskip("captum")

LAYER = "net.features.3"


def _blobs(n=60, dim=20, shift=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, dim, generator=g) + shift * torch.eye(dim)[0]
    neg = torch.randn(n, dim, generator=g) + 0.5 * torch.ones(dim)
    return pos, neg


def _fit(clf, pos, neg):
    batches = [(pos, torch.zeros(len(pos), dtype=torch.long)),
               (neg, torch.ones(len(neg), dtype=torch.long))]
    return clf.train_and_eval(batches)


def test_gram_schmidt_random_sets_are_orthogonal_to_the_concept_direction():
    pos, neg = _blobs()
    u = torch.nn.functional.normalize(pos.mean(0), dim=0)
    orthogonal = gram_schmidt(neg, pos)
    assert (orthogonal @ u).abs().max() < 1e-5
    # nothing else changes: the part orthogonal to u is the random activations' own
    assert torch.allclose(orthogonal - (orthogonal @ u)[:, None] * u, neg - (neg @ u)[:, None] * u,
                          atol=1e-5)


def test_the_concept_classifier_recalls_a_separable_concept_and_points_to_it():
    pos, neg = _blobs(shift=6.0)
    stats = _fit(clf := ConceptClassifier(0), pos, neg)
    assert stats["recall"] == 1.0 and stats["specificity"] == 1.0
    w = clf.weights()
    assert clf.classes() == [0, 1] and torch.allclose(w[0], -w[1])
    assert (pos @ w[0]).mean() > (neg @ w[0]).mean()  # the concept's row points to the concept


def test_acav_widens_the_margin():
    """On overlapping blobs the adversarially trained classifier leaves more room between the
    bulk of each class and its boundary (the 10% quantiles of the distances) than a plain one;
    with the margin ignored the two would be equal."""
    pos, neg = _blobs(shift=4.0, seed=1)
    room = {}
    for eps in (0.0, 0.3):
        clf = ConceptClassifier(0, eps=eps, steps=600, test_share=0.01)
        _fit(clf, pos, neg)
        w = clf.weights()[0]  # a unit normal: projections are distances up to the bias
        room[eps] = (torch.quantile(pos @ w, 0.1) - torch.quantile(neg @ w, 0.9)).item()
    assert room[0.3] > room[0.0]


def test_concept_rules_select_what_they_say():
    x = torch.zeros(4, 1, 8, 8)
    x[0, :, :2] = 1.0   # ink at the top only
    x[1, :, 6:] = 1.0   # at the bottom only
    x[2] = 1.0          # everywhere: half of it in the top half
    x[3, :, 3:5, 3:5] = 1.0
    y = torch.tensor([0, 1, 2, 8])
    assert rule_members("mask:top:0.6", x, y, 10).tolist() == [True, False, False, False]
    assert rule_members("mask:centre:0.9", x, y, 10).tolist() == [False, False, False, True]
    assert rule_members("classes:0,8", x, y, 10).tolist() == [True, False, False, True]


def test_the_tcav_score_is_the_share_of_positive_directional_derivatives(two_epochs):
    """captum's score, recomputed by hand: gradients of the class logit at the layer, dotted
    with the concept's CAV row."""
    import captum.concept as cc

    model, splits, _ = open_run(two_epochs.run_dir, "last", "cpu")
    x, y = splits.train.tensors(0, None)
    concept = x[y == 0][:40]
    randoms = x[y != 0][:40]
    xt, yt = splits.test.tensors(0, None)
    scored = xt[yt == 6][:30]
    tcav = cc.TCAV(model, [LAYER], classifier=ConceptClassifier(0),
                   save_path=str(two_epochs.run_dir.parent / "cav_check") + "/")
    sets = [[cc.Concept(0, "c", [concept]), cc.Concept(1, "r", [randoms])]]
    score = tcav.interpret(scored, sets, target=6)["0-1"][LAYER]["sign_count"][0].item()
    cav = tcav.cavs["0-1"][LAYER].stats["weights"][0]
    acts = {}
    module = dict(model.named_modules())[LAYER]
    handle = module.register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    out = model(scored)
    handle.remove()
    grads = torch.autograd.grad(out[:, 6].sum(), acts["a"])[0].flatten(1)
    assert 0 < score < 1 and score == pytest.approx(((grads @ cav) > 0).float().mean().item())


def test_a_seeded_study_reproduces(two_epochs):
    model, splits, _ = open_run(two_epochs.run_dir, "last", "cpu")
    kw = dict(seeds=3, n_concept=40, n_random=40, n_class=30)
    variants = [Variant("cav"), Variant("a-cav+gs", eps=0.1, gram_schmidt=True, average=2)]
    first = concept_study(model, splits, LAYER, "classes:0,8", 6, variants, **kw)
    second = concept_study(model, splits, LAYER, "classes:0,8", 6, variants, **kw)
    assert first["per_seed"] == second["per_seed"]
    assert len(first["per_seed"]["cav"]["tcav"]) == 3
    assert len(set(first["per_seed"]["cav"]["recall"] + first["per_seed"]["cav"]["tcav"])) > 1


def test_the_command_writes_its_table(two_epochs, tmp_path, capsys):
    code = main(["concepts", str(two_epochs.run_dir), "--layer", LAYER, "--concept",
                 "mask:top:0.5", "--class", "7", "--acav", "--seeds", "2", "--n-random", "30",
                 "--n-concept", "30", "--n-class", "20", "--out-dir", str(tmp_path / "c")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "| cav |" in out and "| a-cav |" in out and (tmp_path / "c" / "concepts.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--layer", "net.nope"], "the model has no layer 'net.nope'"),
    (["--concept", "classes:99"], "concept classes:99 must list classes in [0, 9]"),
    (["--concept", "mask:top:0.999999"], "concept mask:top:0.999999 selects 0 images"),
    (["--class", "10"], "--class must be a class of digits, 0 to 9 (got 10)"),
    (["--concept", "stripes"], "concept 'stripes' is neither a folder of images nor a rule"),
])
def test_bad_input_is_one_line(two_epochs, capsys, args, message):
    base = {"--layer": LAYER, "--concept": "classes:0", "--class": "6"}
    base.update(dict(zip(args[::2], args[1::2])))
    code = main(["concepts", str(two_epochs.run_dir), *[t for kv in base.items() for t in kv],
                 "--seeds", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
