"""The consolidation policy: which buffered observations a sleep consolidates,
learned by reinforcement learning in weight space.

- :mod:`reverie.policy.stream`: world streams where choosing matters (hidden popularity,
  known facts, chatter, duplicates, updates);
- :mod:`reverie.policy.tables`: the real injections and greedy answers of a stream,
  computed once (bank strategy);
- :mod:`reverie.policy.features`: what the policy sees of each observation;
- :mod:`reverie.policy.env`: the Gymnasium environment;
- :mod:`reverie.policy.baselines`: first, random, recency, surprise, repeated, oracle;
- :mod:`reverie.policy.net`: the permutation-invariant scorer (safetensors);
- :mod:`reverie.policy.train`: PPO (Stable-Baselines3), resumable (`reverie train policy`);
- :mod:`reverie.policy.bench`: `reverie bench policy` on held-out streams;
- :mod:`reverie.policy.selector`: the ``learned`` selector of ``sleep()``.
"""
