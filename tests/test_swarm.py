"""The batched particle swarm: convergence on test functions, bounds, seeding, batching."""

from __future__ import annotations

import math

import pytest
import torch

from infoswarm.errors import InputError
from infoswarm.swarm import SwarmConfig, minimize


def sphere(shift):
    def fn(pos, idx):
        vals = (pos - shift[idx].unsqueeze(1)).square().sum(-1)
        return vals, torch.zeros_like(vals, dtype=torch.bool)
    return fn


def rastrigin(pos, idx):
    vals = 10 * pos.shape[-1] + (pos.square() - 10 * torch.cos(2 * math.pi * pos)).sum(-1)
    return vals, torch.zeros_like(vals, dtype=torch.bool)


def test_minimises_shifted_spheres_in_a_batch():
    b, d = 4, 5
    shift = torch.linspace(-2, 2, b * d, dtype=torch.float64).view(b, d)
    lo, hi = torch.full((b, d), -5.0, dtype=torch.float64), torch.full((b, d), 5.0, dtype=torch.float64)
    cfg = SwarmConfig(particles=60, iterations=150, w=0.6, c1=1.5, c2=1.5, vmax_frac=0.2)
    res = minimize(sphere(shift), lo, hi, cfg, seeds=range(b))
    assert torch.all(res.value < 1e-3)
    torch.testing.assert_close(res.position, shift, atol=0.05, rtol=0)
    assert torch.all(res.evaluations == 60 * 151)


def test_finds_rastrigin_global_minimum():
    lo, hi = torch.full((3, 2), -5.12, dtype=torch.float64), torch.full((3, 2), 5.12, dtype=torch.float64)
    cfg = SwarmConfig(particles=200, iterations=200, w=0.6, c1=1.5, c2=1.5, vmax_frac=0.2)
    res = minimize(rastrigin, lo, hi, cfg, seeds=[0, 1, 2])
    assert torch.all(res.value < 1e-2), res.value
    assert torch.all(res.position.abs() < 0.05)


def test_positions_stay_inside_asymmetric_bounds():
    seen = []

    def fn(pos, idx):
        seen.append((pos.clone(), idx.clone()))
        vals = -pos.sum(-1)  # pushes every particle towards its upper bounds
        return vals, torch.zeros_like(vals, dtype=torch.bool)

    lo = torch.tensor([[0.0, -1.0, 0.2], [0.5, 0.5, -0.3]])
    hi = torch.tensor([[0.1, 0.0, 0.2], [0.9, 0.6, 0.0]])  # one zero-width dimension
    res = minimize(fn, lo, hi, SwarmConfig(particles=30, iterations=20), seeds=[5, 6])
    for pos, idx in seen:
        assert torch.all(pos >= lo[idx].unsqueeze(1)) and torch.all(pos <= hi[idx].unsqueeze(1))
    assert torch.all(res.position >= lo) and torch.all(res.position <= hi)


def test_batched_equals_one_at_a_time_and_seeds_repeat():
    b, d = 5, 4
    shift = torch.rand(b, d, generator=torch.Generator().manual_seed(0))
    lo, hi = torch.zeros(b, d), torch.ones(b, d)
    cfg = SwarmConfig(particles=20, iterations=15)
    seeds = [11, 12, 13, 14, 15]
    batched = minimize(sphere(shift), lo, hi, cfg, seeds=seeds)
    again = minimize(sphere(shift), lo, hi, cfg, seeds=seeds)
    assert torch.equal(batched.position, again.position)
    for i in range(b):
        single = minimize(sphere(shift[i: i + 1]), lo[i: i + 1], hi[i: i + 1], cfg, seeds=[seeds[i]])
        assert torch.equal(single.position[0], batched.position[i])
        assert torch.equal(single.value[0], batched.value[i])
    other = minimize(sphere(shift), lo, hi, cfg, seeds=[1, 2, 3, 4, 5])
    assert not torch.equal(other.position, batched.position)


def test_finished_problems_stop_costing_evaluations():
    def fn(pos, idx):
        vals = pos.sum(-1)
        ok = vals < 0.5 * pos.shape[-1] * (idx.unsqueeze(1) == 0)  # only problem 0 can succeed
        return vals, ok

    lo, hi = torch.zeros(2, 3), torch.ones(2, 3)
    res = minimize(fn, lo, hi, SwarmConfig(particles=10, iterations=8), seeds=[0, 1])
    assert res.success.tolist() == [True, False]
    assert res.evaluations[0] == 10 and res.iterations[0] == 0
    assert res.evaluations[1] == 10 * 9 and res.iterations[1] == 8
    inactive = minimize(fn, lo, hi, SwarmConfig(particles=10, iterations=8), seeds=[0, 1],
                        active=torch.tensor([False, True]))
    assert inactive.evaluations[0] == 0 and inactive.value[0] == float("inf")


def test_velocity_is_carried_between_iterations():
    """With c1 = c2 = 0 a particle keeps moving by w^t times its first velocity."""
    track = []

    def fn(pos, idx):
        track.append(pos[0, 0, 0].item())
        return torch.zeros(pos.shape[:2]), torch.zeros(pos.shape[:2], dtype=torch.bool)

    cfg = SwarmConfig(particles=1, iterations=3, w=0.5, c1=0.0, c2=0.0, vmax_frac=1.0)
    minimize(fn, torch.zeros(1, 1), torch.full((1, 1), 10.0), cfg, seeds=[0])
    steps = [b - a for a, b in zip(track, track[1:])]
    assert steps[1] == pytest.approx(0.5 * steps[0], rel=1e-4)
    assert steps[2] == pytest.approx(0.5 * steps[1], rel=1e-4)


def test_bad_configurations():
    lo, hi = torch.zeros(1, 2), torch.ones(1, 2)
    with pytest.raises(InputError):
        minimize(sphere(lo), lo, hi, SwarmConfig(particles=0), seeds=[0])
    with pytest.raises(InputError):
        minimize(sphere(lo), hi, lo - 1, SwarmConfig(), seeds=[0])
    with pytest.raises(InputError):
        minimize(sphere(lo), lo, hi, SwarmConfig(), seeds=[0, 1])
