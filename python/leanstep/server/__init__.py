"""HTTP layer: the Flask app (``app.create_app``), request/response models (``schemas``) and the
production server (``wsgi.serve``, waitress). Nothing below this package knows about HTTP."""
