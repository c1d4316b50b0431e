"""The Docker API proxy between the runner and the engine (docs/deploy.md): the runner never gets the raw
socket; it talks to ``tcp://docker-proxy:2375``, which forwards only the calls it needs and enforces the sandbox
hardening on every container it creates.

- :mod:`deploy.dockerproxy.policy`: pure; a request + a :class:`~deploy.dockerproxy.policy.ProxyPolicy` →
  allowed or denied with a reason.
- :mod:`deploy.dockerproxy.server`: the asyncio TCP server forwarding what the policy allows to the unix socket.

Run it with ``nanoclaw deploy docker-proxy``.
"""
