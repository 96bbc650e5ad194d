"""Ray Serve: the detector deployment, the API ingress and the dashboard."""
