"""The HTTP service: routes, response shapes of the peer APIs, and its web page."""
