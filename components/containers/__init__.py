"""The Docker building blocks: networks, the hardened container every service runs in, labels,
and the endpoints services publish to each other."""
