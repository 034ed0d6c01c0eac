"""The JSON API (/api/v1/): the web app's reads and label submission for scripts and apps.

``api.py`` holds the NinjaAPI and its endpoints, ``schemas.py`` the request and response
shapes, ``auth.py`` bearer-token and session authentication, ``services.py`` and
``selectors.py`` the token writes and the API's own reads.
"""
