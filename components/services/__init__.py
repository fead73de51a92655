"""The services of one environment, one module each. A service never imports another service:
the composition hands each one the endpoints, secrets and networks it needs."""
