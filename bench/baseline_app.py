"""The reference: the original tutorial app's handlers, as it wrote them.

json.load + json.dumps per request for the label file, and FileStorage.save for uploads (Werkzeug
spools each part to a temporary file, then save() copies it). Run under the same gunicorn
configuration as filedock, so the comparison is of the handlers, not the servers."""

from __future__ import annotations

import json
import os

from flask import Flask, request
from flask_cors import CORS

app = Flask(__name__)
CORS(app)
FOLDER = os.environ.get("BASELINE_FOLDER", ".")


@app.route("/getJsonFromFile/<filename>", methods=["GET"])
def get_json_from_file(filename: str) -> str:
    with open(os.path.join(FOLDER, filename)) as f:
        data = json.load(f)
    return json.dumps({"STATUS": "true", "LABELS_MAPPING": data})


@app.route("/uploadFiles", methods=["POST"])
def upload_files() -> str:
    files = request.files.getlist("FILES_LIST")
    file_name = request.form.get("FILE_NAME", "")
    error_files = ""
    for file in files:
        try:
            file.save(os.path.join(FOLDER, file_name + (file.filename or "").replace(" ", "")))
        except OSError:
            error_files += "," + (file.filename or "")
    return json.dumps({"STATUS": "true", "ERROR_FILES_LIST": error_files})
