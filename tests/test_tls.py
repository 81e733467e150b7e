"""TLS: certificates are always verified; a credential's ca_file (or
CURL_CA_BUNDLE) names the CA to verify with (README "Guarantees").

A small HTTPS server on 127.0.0.1 with a self-signed certificate made for the
test answers every request with 201 and a JSON body.  Without the
certificate as ca_file the handshake fails (`failed`, "TLS handshake
failed", nothing answered); with it the request is `ok`; a ca_file that
cannot be read is refused when the credential is registered.
"""
import http.server
import json
import os
import ssl
import threading

from helpers import q, self_signed_cert


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Handler.hits.append((self.path, body))
        out = json.dumps({"id": "COMtls", "name": "tls"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


def _tls_server(ctx):
    """Starts the HTTPS server; returns (server, cert path, base URL)."""
    cert, key = self_signed_cert(ctx.dir)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, cert, "https://127.0.0.1:%d" % server.server_address[1]


def _send_one(ctx, base, ca_arg, env=None):
    dest = {"credential": "tls", "url": "/v3/a/ACC1/companies.json",
            "retry": {"max_attempts": 1}}
    script = ("SELECT callrail_credential('tls', 'test-token', %s%s);\n"
              "SELECT callrail_destination('d', %s);\n"
              "SELECT callrail_activate('d');\n"
              "SELECT state, status, error FROM callrail_send('d', 'SELECT ''x'' AS name');\n"
              % (q(base), ca_arg, q(json.dumps(dest))))
    return ctx.sql(script, env=env, check=False)[1].splitlines()


def test_tls_certificate_is_verified_and_ca_file_or_curl_ca_bundle_trusts_it(ctx):
    server, cert, base = _tls_server(ctx)
    _Handler.hits = []
    try:
        out = _send_one(ctx, base, "")
        assert out[-1].startswith("failed||TLS handshake failed"), out
        assert _Handler.hits == [], "a request was answered over an unverified connection"
        out = _send_one(ctx, base, ", " + q(cert))
        assert out[-1] == "ok|201|", out
        out = _send_one(ctx, base, "", env={"CURL_CA_BUNDLE": cert})
        assert out[-1] == "ok|201|", out
        assert len(_Handler.hits) == 2, _Handler.hits
    finally:
        server.shutdown()
    stored = ctx.rows("SELECT ca_file FROM callrail_credentials")
    assert stored == [{"ca_file": None}], stored  # the last registration named none


def test_unreadable_ca_file_is_refused_naming_the_credential_and_file(ctx):
    _, out = ctx.sql("SELECT callrail_credential('c', 'tok', 'https://127.0.0.1:1',"
                     " '/nonexistent/ca.pem');\n", check=False)
    assert 'credential "c": cannot read ca_file /nonexistent/ca.pem' in out, out
    assert ctx.rows("SELECT count(*) AS n FROM callrail_credentials") == [{"n": 0}]
