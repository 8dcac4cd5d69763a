"""Tests of the budget-allocation DP (spec §4.3, §11 cases 1-4).

Spec case 5 (naive policies) and case 10 (the policy ELBO weights, on
Denoiser.elbo_with_policy) are tested in test_policies.py.
"""
import numpy as np
import pytest

from tf_ardm.generation import dynamic_programming as dp
from tf_ardm.generation import policies as policies_lib

SPEC_LOSSES = [5.0, 4.0, 3.0, 2.85, 2.80]


def brute_force(losses, max_budget):
  """Reference O(N^3) DP: full (N+1)x(N+1) matrices, first minimiser.

  Returns C, A of shape [max_budget+1, N+1] and the policy for every budget
  1..max_budget.
  """
  losses = np.asarray(losses, np.float64)
  n = losses.size
  m = np.zeros((n + 1, n + 1))
  for s in range(n):
    for u in range(s + 1, n + 1):
      m[s, u] = (u - s) * losses[s]
  c = np.full((max_budget + 1, n + 1), np.inf)
  a = np.full((max_budget + 1, n + 1), -1)
  c[0, 0] = 0.0
  for k in range(1, max_budget + 1):
    total = c[k - 1][:, None] + m
    a[k] = np.argmin(total, axis=0)  # first minimiser
    c[k] = total[a[k], np.arange(n + 1)]
  policies = []
  for b in range(1, max_budget + 1):
    u, path = n, []
    for k in range(b, 0, -1):
      u = a[k, u]
      path.append(u)
    policies.append(path[::-1])
  return c, a, policies


# --- Case 1: the reference unit test and the worked example. ---------------


def test_spec_case1_costs_and_policies():
  policies, costs = dp.optimal_policies(SPEC_LOSSES, range(1, 6))
  np.testing.assert_allclose(costs, [25, 19, 18, 17.7, 17.65], rtol=1e-12)
  expected = [[0], [0, 2], [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3, 4]]
  assert [p.tolist() for p in policies] == expected
  assert all(p.dtype == np.int32 for p in policies)
  assert costs.dtype == np.float64


@pytest.mark.parametrize("method", ["monotone", "general"])
def test_spec_case1_full_tables(method):
  """Every entry C[k, u], A[k, u] (k, u >= 1) of the spec's tables.

  Column u of the tables is the DP of the first u losses: C[k, u] is the cost
  of its policy for budget min(k, u) and A[k, u] that policy's last entry
  (the first step of the backtracking).
  """
  inf = np.inf
  c = np.array([
      [0, inf, inf, inf, inf, inf],
      [0, 5, 10, 15, 20, 25],
      [0, 5, 9, 13, 16, 19],
      [0, 5, 9, 12, 15, 18],
      [0, 5, 9, 12, 14.85, 17.7],
      [0, 5, 9, 12, 14.85, 17.65],
  ])
  a = np.array([
      [-1] * 6,
      [0, 0, 0, 0, 0, 0],
      [0, 0, 1, 1, 2, 2],
      [0, 0, 1, 2, 2, 2],
      [0, 0, 1, 2, 3, 3],
      [0, 0, 1, 2, 3, 4],
  ])
  for u in range(1, 6):
    budgets = [min(k, u) for k in range(1, 6)]
    policies, costs = dp.optimal_policies(SPEC_LOSSES[:u], budgets, sort=False,
                                          method=method)
    np.testing.assert_allclose(costs, c[1:, u], rtol=1e-12)
    assert [p[-1] for p in policies] == a[1:, u].tolist(), u


def test_budget_subset_any_order():
  policies, costs = dp.optimal_policies(SPEC_LOSSES, [4, 2, 2])
  np.testing.assert_allclose(costs, [17.7, 19, 19])
  assert [p.tolist() for p in policies] == [[0, 1, 2, 3], [0, 2], [0, 2]]
  policies, costs = dp.optimal_policies(SPEC_LOSSES, 2)
  assert [p.tolist() for p in policies] == [[0, 2]]


# --- Case 2: policy cost. ---------------------------------------------------


def test_spec_case2_policy_cost():
  assert dp.policy_cost(SPEC_LOSSES, [0, 2]) == pytest.approx(19.0)
  assert dp.policy_cost(SPEC_LOSSES, [0, 1, 2]) == pytest.approx(18.0)
  assert dp.policy_cost(SPEC_LOSSES, [0]) == pytest.approx(25.0)
  assert dp.policy_cost(SPEC_LOSSES, np.arange(5)) == pytest.approx(17.65)
  # One step from state 2 generates 2..4: M[2, 5] = 3 * 3 = 9; a repeated
  # entry is a step that generates nothing (M[s, s] = 0).
  assert dp.policy_cost(SPEC_LOSSES, [0, 2]) - dp.policy_cost(SPEC_LOSSES[:2], [0]) == (
      pytest.approx(9.0))
  assert dp.policy_cost(SPEC_LOSSES, [0, 2, 2]) == dp.policy_cost(SPEC_LOSSES, [0, 2])
  assert dp.policy_cost(SPEC_LOSSES, [0, 0, 0]) == pytest.approx(25.0)


# --- Case 3: harmonic losses. -----------------------------------------------


def test_spec_case3_harmonic():
  losses = 1.0 / (np.arange(20) + 1)
  policies, costs = dp.optimal_policies(losses, [1, 2, 3, 5])
  assert [p.tolist() for p in policies] == [
      [0], [0, 4], [0, 2, 7], [0, 1, 3, 6, 11]]
  np.testing.assert_allclose(costs, [20.0, 7.2, 5.2916667, 4.2142857],
                             rtol=1e-7)


# --- Case 4: sorting matters. -----------------------------------------------


def test_spec_case4_unsorted_keeps_order_with_sort_false():
  policies, costs = dp.optimal_policies([3, 5, 1, 2, 4], [3], sort=False)
  assert policies[0].tolist() == [0, 0, 2]
  assert costs[0] == pytest.approx(9.0)
  assert dp.policy_cost([3, 5, 1, 2, 4], policies[0]) == pytest.approx(9.0)


def test_spec_case4_sorted():
  expected = {2: ([0, 2], 19.0), 3: ([0, 1, 3], 17.0), 4: ([0, 1, 2, 3], 16.0)}
  for losses, sort in (([5, 4, 3, 2, 1], False), ([3, 5, 1, 2, 4], True)):
    policies, costs = dp.optimal_policies(losses, [2, 3, 4], sort=sort)
    for (b, (policy, cost)), got, got_cost in zip(expected.items(), policies,
                                                  costs):
      assert got.tolist() == policy, b
      assert got_cost == pytest.approx(cost)


def test_spec_case4_flat():
  policies, costs = dp.optimal_policies([1.0] * 6, [3])
  assert policies[0].tolist() == [0, 0, 0]
  assert costs[0] == pytest.approx(6.0)
  _, _, bf = brute_force([1.0] * 6, 6)
  policies, _ = dp.optimal_policies([1.0] * 6, range(1, 7))
  assert [p.tolist() for p in policies] == bf


# --- Fast DP against brute force. -------------------------------------------


def _check_against_brute_force(losses, sort, method="auto"):
  """Every budget's policy and cost against brute force."""
  values = np.asarray(losses, np.float64)
  used = np.sort(values)[::-1] if sort else values
  n = values.size
  c_bf, _, p_bf = brute_force(used, n)
  policies, costs = dp.optimal_policies(values, range(1, n + 1), sort=sort,
                                        method=method)
  np.testing.assert_allclose(costs, c_bf[1:, n], rtol=1e-9, atol=1e-12)
  for b, (policy, cost) in enumerate(zip(policies, costs), start=1):
    assert policy.shape == (b,)
    assert policy[0] == 0
    assert np.all(np.diff(policy) >= 0)
    assert dp.policy_cost(used, policy) == pytest.approx(cost, rel=1e-9,
                                                         abs=1e-12)
  # Documented guarantee is on costs; with these seeds the argmins along
  # every budget's backtracking path (and so the policies) also match the
  # first-minimiser brute force exactly.
  assert [p.tolist() for p in policies] == p_bf


@pytest.mark.parametrize("n", [1, 2, 7, 30, 100])
def test_random_sorted_matches_brute_force(n):
  rng = np.random.default_rng(n)
  losses = np.sort(rng.exponential(size=n))[::-1]
  _check_against_brute_force(losses, sort=False, method="monotone")
  # sort=True on a shuffled copy gives the same answer.
  _check_against_brute_force(rng.permutation(losses), sort=True)


@pytest.mark.parametrize("n", [1, 2, 7, 30, 100])
def test_random_unsorted_matches_brute_force(n):
  rng = np.random.default_rng(1000 + n)
  losses = rng.random(n) * 3
  _check_against_brute_force(losses, sort=False)  # general solver
  _check_against_brute_force(losses, sort=True)   # monotone solver


@pytest.mark.parametrize("n", [7, 30, 100])
def test_ties_match_brute_force_exactly(n):
  # Small integers: all arithmetic is exact, so many exact ties, and the
  # first-minimiser tie-breaking must agree with brute force.
  rng = np.random.default_rng(2000 + n)
  losses = np.sort(rng.integers(0, 4, size=n).astype(float))[::-1]
  _check_against_brute_force(losses, sort=False, method="monotone")
  _check_against_brute_force(losses, sort=False, method="general")
  _check_against_brute_force(rng.integers(0, 4, size=n), sort=False)


def test_non_dyadic_ties_costs_match_brute_force():
  # Runs of equal non-dyadic losses tie in exact arithmetic; brute force then
  # picks an argmin by rounding noise, and the monotone solver may pick a
  # different policy. Documented guarantee: costs agree to 1e-9 relative.
  rng = np.random.default_rng(11)
  losses = np.sort(rng.choice([0.1, 0.3, 0.7, 1 / 3], size=60))[::-1]
  n = losses.size
  c_bf, _, _ = brute_force(losses, n)
  policies, costs = dp.optimal_policies(losses, range(1, n + 1),
                                        method="monotone")
  np.testing.assert_allclose(costs, c_bf[1:, n], rtol=1e-9)
  for b, (policy, cost) in enumerate(zip(policies, costs), start=1):
    assert policy.shape == (b,) and policy[0] == 0
    assert np.all(np.diff(policy) >= 0)
    assert dp.policy_cost(losses, policy) == pytest.approx(c_bf[b, n],
                                                           rel=1e-9)


def test_negative_losses_match_brute_force():
  # Not expected in practice; candidates s > u (M = 0) then matter.
  rng = np.random.default_rng(7)
  for losses in (np.sort(rng.normal(size=40))[::-1], rng.normal(size=40)):
    n = losses.size
    c_bf, _, p_bf = brute_force(losses, n)
    for method in ("auto", "general"):
      policies, costs = dp.optimal_policies(losses, range(1, n + 1), sort=False,
                                            method=method)
      np.testing.assert_allclose(costs, c_bf[1:, n], rtol=1e-9, atol=1e-9)
      assert [p.tolist() for p in policies] == p_bf
      for policy, cost in zip(policies, costs):
        assert dp.policy_cost(losses, policy) == pytest.approx(cost, rel=1e-9, abs=1e-9)


def test_monotone_and_general_agree_larger():
  rng = np.random.default_rng(3)
  losses = np.sort(rng.gamma(0.5, size=400))[::-1]
  budgets = [1, 2, 3, 10, 50, 137]
  p1, c1 = dp.optimal_policies(losses, budgets, method="monotone")
  p2, c2 = dp.optimal_policies(losses, budgets, method="general")
  np.testing.assert_allclose(c1, c2, rtol=1e-12)
  for a, b in zip(p1, p2):
    np.testing.assert_array_equal(a, b)
  # Costs never increase with the budget and beat the naive policy.
  assert np.all(np.diff(c1) <= 1e-12)
  for b, cost in zip(budgets, c1):
    naive = policies_lib.naive_policy(400, b).numpy()
    assert cost <= dp.policy_cost(losses, naive) + 1e-9


# --- Validation. ------------------------------------------------------------


@pytest.mark.parametrize("losses, budgets, match", [
    ([], [1], "empty"),
    ([1.0, np.nan], [1], "finite"),
    ([1.0, np.inf], [1], "finite"),
    ([[1.0, 2.0]], [1], "1-D"),
    ([1.0, 2.0], [0], r"\[1, 2\]"),
    ([1.0, 2.0], [3], r"\[1, 2\]"),
    ([1.0, 2.0], [1, -1], r"\[1, 2\]"),
    ([1.0, 2.0], [], "at least one"),
    ([1.0, 2.0], [1.5], "integer"),
])
def test_optimal_policies_validation(losses, budgets, match):
  with pytest.raises(ValueError, match=match):
    dp.optimal_policies(losses, budgets)


def test_other_validation():
  with pytest.raises(ValueError, match="monotone"):
    dp.optimal_policies([1.0, 2.0], [1], sort=False, method="monotone")
  with pytest.raises(ValueError, match="method"):
    dp.optimal_policies([1.0, 2.0], [1], method="fast")
  with pytest.raises(ValueError, match="policy"):
    dp.policy_cost([1.0, 2.0], [0, 3])
  with pytest.raises(ValueError, match="policy"):
    dp.policy_cost([1.0, 2.0], [])
  with pytest.raises(ValueError, match="policy"):
    dp.policy_cost([1.0, 2.0], [0.5, 1])
