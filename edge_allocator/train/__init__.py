"""Training and evaluation: demonstrations, behaviour cloning, RL fine-tuning, scoring."""
