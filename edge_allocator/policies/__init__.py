"""Policies: learned nn.Modules (DQN, PPO actor-critic, hybrid GNN) and heuristics.

Every policy maps a graph of N nodes to one score per node; the highest-scoring
feasible node is the decision.
"""
