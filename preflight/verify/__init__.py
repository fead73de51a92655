"""`python -m preflight verify`: the checks a platform engineer runs right after `pulumi up` to
prove a live stack works, from the stack's own outputs.

Modules: ``targets`` (what to check, from the ``verify`` output), ``checks`` (the registry and
its fourteen categories), ``http_client`` and ``http_checks`` (through the proxy), ``docker_api``
and ``inventory`` (the Engine API and the stack's objects in it), ``container_checks``
(containers, networks, volumes), ``probes`` and ``probe_checks`` (commands run inside the
stack's containers), ``context`` (what every check gets), ``report`` (table and JSON),
``command`` (the CLI).
"""

from preflight.verify.command import add_arguments, run

__all__ = ["add_arguments", "run"]
