"""The Flask application of the end-to-end tests (``trioweb --wsgi flask_app:app``,
run from this directory), also published by a real user behind the front."""

import hashlib
import os

from flask import Flask, Response, redirect, request, send_file, session, stream_with_context, url_for

app = Flask(__name__)
app.secret_key = b"only for the tests"
HERE = os.path.dirname(os.path.abspath(__file__))


@app.route("/")
def index():
    return f"Flask at {request.script_root or '/'}"


@app.route("/go")
def go():
    return redirect(url_for("target"))


@app.route("/go-external")
def go_external():
    return redirect(url_for("target", _external=True))


@app.route("/target")
def target():
    return f"target: {url_for('target')} {url_for('target', _external=True)}"


@app.route("/visit")
def visit():
    session["visits"] = session.get("visits", 0) + 1
    return f"visits: {session['visits']}"


@app.route("/upload", methods=["POST"])
def upload():
    sent = request.files["file"]
    digest = hashlib.sha256()
    size = 0
    while piece := sent.stream.read(65536):
        digest.update(piece)
        size += len(piece)
    return f"{sent.filename} {size} {digest.hexdigest()}"


@app.route("/stream")
def stream():
    def lines():
        for i in range(int(request.args.get("n", "5"))):
            yield f"line {i}\n"

    return Response(stream_with_context(lines()), mimetype="text/plain")


@app.route("/file")
def file():
    return send_file(os.path.join(HERE, "payload.bin"), mimetype="application/octet-stream")


@app.route("/whoami")
def whoami():
    return f"{os.getuid()} {request.environ['SCRIPT_NAME']} {request.environ['PATH_INFO']}"
