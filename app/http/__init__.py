"""The HTTP edge: the app and its routes, identity, errors as HTTP answers, the
middlewares, the pages, and the API function's Lambda entry point."""
