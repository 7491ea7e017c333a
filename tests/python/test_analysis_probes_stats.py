"""Probes on planted features, streaming neuron statistics against a direct computation, CKA."""
import math

import numpy as np
import pytest
import torch

import speechlens as sl
from analysis_helpers import save_tiny_whisper


def planted(n=600, d=24, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    directions = torch.randn(d, classes, generator=g)
    return x, (x @ directions).argmax(1)


def test_logistic_probe_finds_a_planted_linear_feature():
    x, y = planted()
    r = sl.probes.train_probe(x, y, "logistic", l2=1e-4, max_iter=2000)
    assert r.metric == "accuracy"
    assert r.test_score >= 0.95
    assert r.control_score < 0.5          # three classes: chance is about 1/3
    assert r.n_test == 150 and r.n_train == 450
    # The returned weights act on raw features.
    predicted = (x @ r.weight.T.float() + r.bias.float()).argmax(1)
    assert (predicted == y).float().mean() >= 0.95


def test_probe_is_deterministic_and_seeded():
    x, y = planted(seed=2)
    a = sl.probes.train_probe(x, y, seed=7)
    b = sl.probes.train_probe(x, y, seed=7)
    c = sl.probes.train_probe(x, y, seed=8)
    assert a.test_score == b.test_score and torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, c.weight)


def test_ridge_probe_r2():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(400, 16, generator=g) * torch.linspace(0.1, 5, 16)
    w = torch.randn(16, generator=g)
    y = x @ w + 3.0 + 0.01 * torch.randn(400, generator=g)
    r = sl.probes.train_probe(x, y, "ridge", l2=1e-6)
    assert r.metric == "r2"
    assert r.test_score > 0.999
    assert r.control_score < 0.1
    torch.testing.assert_close(r.weight[0].float(), w, atol=1e-2, rtol=0)
    assert abs(r.bias.item() - 3.0) < 1e-2


def test_probe_layers_and_pooling():
    acts = torch.randn(40, 6, 5)
    mask = torch.ones(40, 6, dtype=torch.bool)
    mask[:, 4:] = False
    pooled = sl.probes.pool_frames(acts, mask)
    torch.testing.assert_close(pooled, acts[:, :4].mean(1))
    labels = torch.randint(0, 3, (40, 6))
    x, y = sl.probes.flatten_frames(acts, labels, mask)
    assert x.shape == (160, 5) and y.shape == (160,)
    xs, ys = planted(n=200)
    results = sl.probes.probe_layers([xs, torch.randn(200, 24)], ys, progress=False)
    assert results[0].test_score > results[1].test_score + 0.3


def test_probe_bad_input():
    with pytest.raises(ValueError, match="integer class ids"):
        sl.probes.train_probe(torch.randn(10, 3), torch.randn(10))
    with pytest.raises(ValueError, match="labels must be"):
        sl.probes.train_probe(torch.randn(10, 3), torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown probe kind"):
        sl.probes.train_probe(torch.randn(10, 3), torch.zeros(10, dtype=torch.long), "svm")


def test_neuron_stats_stream_equals_direct_computation():
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(6, 10, 4, generator=g) + torch.arange(4.0)
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    mask = torch.arange(10)[None, :] < torch.tensor([10, 7, 5, 10, 3, 8])[:, None]
    stats = sl.stats.NeuronStats(3, 4)
    for start in range(0, 6, 2):  # streamed two items at a time
        stats.update(acts[start:start + 2], labels[start:start + 2], mask[start:start + 2])
    for c in range(3):
        frames = torch.cat([acts[i][mask[i]] for i in range(6) if labels[i] == c]).double()
        torch.testing.assert_close(stats.mean[c], frames.mean(0))
        torch.testing.assert_close(stats.variance[c], frames.var(0, unbiased=False))
        assert stats.count[c] == frames.shape[0]
        rest = torch.cat([acts[i][mask[i]] for i in range(6) if labels[i] != c]).double()
        m_in, m_out = frames.mean(0), rest.mean(0)
        torch.testing.assert_close(stats.selectivity()[c], (m_in - m_out) / (m_in.abs() + m_out.abs()))
        pooled = ((frames.var(0, unbiased=False) + rest.var(0, unbiased=False)) / 2).sqrt()
        torch.testing.assert_close(stats.dprime()[c], (m_in - m_out) / pooled)


def test_neuron_stats_over_a_model_honours_frame_masks(tmp_path):
    save_tiny_whisper(tmp_path, seed=1)
    model = sl.load(tmp_path)
    g = torch.Generator().manual_seed(2)
    batches = []
    for _ in range(3):
        mel = torch.randn(2, 8, 16, generator=g)
        batches.append(((mel, None, torch.tensor([16, 9])), torch.tensor([0, 1])))
    stats = sl.stats.neuron_stats(model, batches, "encoder.blocks.1.mlp.hook_post", n_classes=2, progress=False)
    assert stats.neurons == 32
    # Mel lengths 16 and 9 give 8 and 5 encoder frames.
    assert stats.count.tolist() == [24.0, 15.0]
    name = "encoder.blocks.1.mlp.hook_post"
    frames = {0: [], 1: []}
    for (mel, _, _), _labels in batches:
        _, cache = model.run_with_cache(mel, names_filter=name)
        frames[0].append(cache[name][0])
        frames[1].append(cache[name][1, :5])
    for c in (0, 1):
        torch.testing.assert_close(stats.mean[c], torch.cat(frames[c]).double().mean(0), atol=1e-6, rtol=0)


def _cka_reference(x, y):
    x = x - x.mean(0)
    y = y - y.mean(0)
    return (np.linalg.norm(x.T @ y) ** 2) / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_linear_cka():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 8, generator=g)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert math.isclose(sl.stats.linear_cka(x, 3.0 * x @ q + 1.0), 1.0, rel_tol=1e-9)
    y = torch.randn(50, 5, generator=g)
    assert math.isclose(sl.stats.linear_cka(x, y), _cka_reference(x.double().numpy(), y.double().numpy()),
                        rel_tol=1e-9)
    m = sl.stats.cka_matrix([x, y])
    assert m.shape == (2, 2)
    torch.testing.assert_close(m.diagonal(), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(m, m.T)
    with pytest.raises(ValueError, match="same N"):
        sl.stats.linear_cka(x, y[:10])
