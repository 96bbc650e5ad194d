"""The HTTP edge without Ray: request and response models, the REST routes and
their OpenAPI document, the live protocol, errors, auth and limits.

``serve_app/`` wraps these in Serve deployments and adds nothing but the
handles they need.
"""
