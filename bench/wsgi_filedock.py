"""filedock as a plain WSGI module (settings from FILEDOCK_* variables), for other servers."""

from filedock.app import create_app

app = create_app()
