"""Pure maths, each function tested against a closed form or brute force: losses,
f-divergences and their policy rewards, Best-of-n estimators, divergence metrics against a
known demonstrator, diversity."""
