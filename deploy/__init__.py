"""Deployment: container images (``deploy.images``) and, later, the compose deployment."""
