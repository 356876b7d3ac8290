"""HTTP layer: the Flask app (``app.create_app``), the JSON body reader (``jsonio``) and the production
server (``wsgi.serve``, waitress); the shapes it reads and writes are ``leanstep.api``'s. Nothing below this
package knows about HTTP."""
