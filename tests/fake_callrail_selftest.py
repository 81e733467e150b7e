#!/usr/bin/env python3
"""Self-test of tests/fake_callrail.py (standard library only).

Run: python3 tests/fake_callrail_selftest.py
Starts the fake as a subprocess on port 0 with a temporary request log and checks each
behaviour through http.client.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "fake_callrail.py")
ACC = "ACC0000000000000000000000000000001"
ACC2 = "ACC0000000000000000000000000000002"
NUMERIC = "123456789"
MSG_403 = "You do not have permission to perform the requested action"


def start_server(tmpdir, name, *extra):
    port_file = os.path.join(tmpdir, name + ".port")
    log = os.path.join(tmpdir, name + ".jsonl")
    args = [sys.executable, SERVER, "--port", "0", "--port-file", port_file, "--log", log,
            "--max-seconds", "120", *extra]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not os.path.exists(port_file):
        if proc.poll() is not None:
            raise RuntimeError("fake server exited with %s" % proc.returncode)
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("fake server did not write its port file")
        time.sleep(0.01)
    with open(port_file) as f:
        text = f.read()
    return proc, int(text), log, text


def stop_server(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


class Reply:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers  # lowercased names
        self.raw = raw
        self.text = raw.decode("utf-8", errors="replace")
        ctype = headers.get("content-type", "")
        self.json = json.loads(self.text) if ctype.startswith("application/json") and raw else None


class Client:
    """A keep-alive http.client connection to the fake."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, token="test-token", quoted=True, headers=None,
                raw=None, ctype="application/json", auth=None):
        h = {}
        if auth is not None:
            h["Authorization"] = auth
        elif token is not None:
            h["Authorization"] = ('Token token="%s"' if quoted else "Token token=%s") % token
        data = None
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
        if data is not None and ctype:
            h["Content-Type"] = ctype
        h.update(headers or {})
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            self.conn.request(method, path, body=data, headers=h)
            r = self.conn.getresponse()
            raw_body = r.read()
        except Exception:
            self.close()
            raise
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if r.will_close:
            self.close()
        return Reply(r.status, hdrs, raw_body)

    # shorthands
    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def control(self, method, name, body=None):
        r = self.request(method, "/__fake/" + name, body, token=None)
        assert r.status == 200, (name, r.status, r.text)
        return r.json


def A(rest, acc=ACC):
    return "/v3/a/%s/%s" % (acc, rest)


COMPANY = {"name": "Widget Shop", "time_zone": "America/Chicago"}
CALL = {"caller_id": "+17703334455", "business_phone_number": "+14045556666",
        "customer_phone_number": "+14044442233"}
SMS = {"company_id": "COMx", "customer_phone_number": "+14044442233",
       "tracking_number": "+17703334455", "content": "Hello"}
FORM = {"company_id": "COMx", "referrer": "google", "referring_url": "https://g.example/",
        "landing_page_url": "https://x.example/", "form_url": "https://x.example/form",
        "form_data": {"name": "Jane", "phone": "4045550000"}}
TRACKER = {"name": "Site pool", "type": "session", "company_id": "COMx", "pool_size": 4,
           "source": {"type": "all"},
           "call_flow": {"type": "basic", "destination_number": "+14045556666",
                         "recording_enabled": True}}
USER = {"first_name": "Ann", "last_name": "Lee", "email": "ann@example.com", "role": "manager"}


class FakeCallRailTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.proc, cls.port, cls.log_path, cls.port_text = start_server(cls.tmp.name, "main")

    @classmethod
    def tearDownClass(cls):
        stop_server(cls.proc)
        cls.tmp.cleanup()

    def setUp(self):
        self.c = Client(self.port)
        self.c.control("POST", "reset")

    def tearDown(self):
        self.c.close()

    def config(self, cfg):
        return self.c.control("POST", "config", cfg)

    def state(self):
        return self.c.control("GET", "state")

    def log(self):
        return self.c.control("GET", "log")

    def assertJSONCT(self, r):
        self.assertEqual(r.headers.get("content-type"), "application/json; charset=utf-8")

    # -- startup and control ---------------------------------------------------------------
    def test_quiesce_answers_only_once_other_connections_are_closed(self):
        other = socket.create_connection(("127.0.0.1", self.port))
        other.sendall(b"GET /__fake/health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200", other.recv(4096))  # answered; the connection stays open
        try:
            r = self.c.get("/__fake/quiesce?timeout=0.3", token=None)
            self.assertEqual(r.status, 409, r.text)
        finally:
            other.close()
        r = self.c.get("/__fake/quiesce?timeout=30", token=None)
        self.assertEqual(r.status, 200, r.text)

    def test_readiness_port_file_and_stdout_line(self):
        self.assertEqual(self.port_text, "%d\n" % self.port)
        line = self.proc.stdout.readline()
        self.assertEqual(line, "listening on 127.0.0.1:%d\n" % self.port)

    def test_binds_loopback_only(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=2):
            pass
        # the listening socket's local address is 127.0.0.1
        out = subprocess.run(["cat", "/proc/net/tcp"], capture_output=True, text=True).stdout
        hexport = "%04X" % self.port
        listening = [l.split()[1] for l in out.splitlines()[1:]
                     if l.split()[1].endswith(":" + hexport) and l.split()[3] == "0A"]
        self.assertEqual(listening, ["0100007F:" + hexport])

    def test_health_state_log_reset_seed(self):
        self.assertEqual(self.c.control("GET", "health"), {"ok": True})
        r = self.c.post(A("companies.json"), COMPANY)
        self.assertEqual(r.status, 201)
        st = self.state()
        self.assertEqual(st["requests"], 1)
        self.assertEqual([o["id"] for o in st["objects"]["companies"]], [r.json["id"]])
        self.assertEqual(st["objects_by_account"][ACC]["companies"][0]["name"], "Widget Shop")
        self.assertEqual(st["quota_used"][ACC]["general"]["hour"], 1)
        self.assertEqual(len(self.log()), 1)
        seeded = self.c.control("POST", "seed", {"account": ACC, "resource": "calls",
                                                 "object": {"id": "CALseed1", "duration": 12}})
        self.assertEqual(seeded["id"], "CALseed1")
        self.assertEqual(seeded["tags"], [])
        r = self.c.get(A("calls/CALseed1.json"))
        self.assertEqual((r.status, r.json["duration"]), (200, 12))
        self.config({"error_shape": "errors_array"})
        self.c.control("POST", "reset")
        st = self.state()
        self.assertEqual((st["requests"], st["objects"], st["quota_used"]), (0, {}, {}))
        self.assertEqual(self.log(), [])
        self.assertEqual(self.c.control("GET", "config")["error_shape"], "error")
        # control requests are not API requests: not logged, not counted
        self.assertEqual(self.state()["requests"], 0)
        r = self.c.get("/__fake/nope", token=None)
        self.assertEqual(r.status, 404)

    def test_config_deep_merge(self):
        cfg = self.config({"quota": {"general": {"hour": 5}}, "faults": {"delay_ms": 0}})
        self.assertEqual(cfg["quota"]["general"], {"hour": 5, "day": 10000})
        self.assertEqual(cfg["quota"]["sms"], {"hour": 150, "day": 1000})
        self.assertEqual(cfg["faults"]["fail_status"], 500)
        self.assertIn("test-token", cfg["tokens"])
        cfg = self.config({"tokens": {"new-token": {"accounts": [ACC2], "admin": True}}})
        self.assertEqual(set(cfg["tokens"]), {"test-token", "limited-token", "new-token"})
        r = self.c.get(A("companies.json", ACC2), token="new-token")
        self.assertEqual(r.status, 200)

    # -- auth ------------------------------------------------------------------------------
    def test_both_token_forms_and_whitespace(self):
        for auth in ('Token token="test-token"', "Token token=test-token",
                     '  Token token="test-token"  ', "Token  token=test-token "):
            r = self.c.get("/v3/a.json", auth=auth)
            self.assertEqual(r.status, 200, auth)
        self.assertJSONCT(r)
        self.assertEqual(r.json, {"page": 1, "per_page": 100, "total_pages": 1, "total_records": 1,
                                  "accounts": [{"id": ACC, "name": "Test Account",
                                                "outbound_recording_enabled": False,
                                                "numeric_id": 123456789,
                                                "hipaa_account": False}]})
        self.assertEqual(self.state()["quota_used"], {})  # GET a.json counts against no account

    def test_401_json_and_plain(self):
        for kw in ({"token": None}, {"token": "wrong"}, {"auth": "Bearer test-token"},
                   {"auth": "test-token"}):
            r = self.c.get(A("companies.json"), **kw)
            self.assertEqual(r.status, 401, kw)
            self.assertEqual(r.json, {"error": "Access denied"})
            self.assertEqual(r.headers["www-authenticate"], 'Token realm="Application"')
        self.config({"plain_text_401": True})
        r = self.c.get(A("companies.json"), token="wrong")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(r.text, "HTTP Token: Access denied.")
        self.assertEqual(r.headers["www-authenticate"], 'Token realm="Application"')
        self.assertEqual(self.log()[-1]["status"], 401)

    def test_403_404_and_numeric_account(self):
        r = self.c.get(A("companies.json", ACC2))
        self.assertEqual((r.status, r.json), (403, {"error": MSG_403}))
        r = self.c.get(A("companies.json", "ACCnope"))
        self.assertEqual((r.status, r.json), (404, {"error": "Not found"}))
        r = self.c.post(A("companies.json", NUMERIC), COMPANY)
        self.assertEqual(r.status, 201)
        r2 = self.c.get(A("companies/%s.json" % r.json["id"]))
        self.assertEqual((r2.status, r2.json["name"]), (200, "Widget Shop"))
        self.assertEqual(self.log()[2]["account"], NUMERIC)
        self.assertEqual(self.log()[2]["account_id"], ACC)
        r = self.c.get("/v3/a/%s.json" % NUMERIC)
        self.assertEqual((r.status, r.json["id"]), (200, ACC))

    def test_404_routes(self):
        for path in (A("companies"), A("companies/COM1"), A("nope.json"), "/v3/x.json", "/",
                     A("companies/a/b.json"), A("companies/COMnope.json")):
            r = self.c.get(path)
            self.assertEqual((r.status, r.json), (404, {"error": "Not found"}), path)
        r = self.c.put(A("companies/COMnope.json"), {"name": "x"})
        self.assertEqual(r.status, 404)

    def test_405(self):
        cid = self.c.post(A("companies.json"), COMPANY).json["id"]
        for method, path in (("PATCH", A("companies/%s.json" % cid)), ("PATCH", "/v3/a.json"),
                             ("PATCH", A("nowhere")), ("POST", "/v3/a.json"),
                             ("DELETE", A("calls/CAL1.json")), ("PUT", A("companies.json")),
                             ("POST", A("companies/%s.json" % cid)),
                             ("DELETE", A("companies.json"))):
            r = self.c.request(method, path, {"name": "x"})
            self.assertEqual(r.status, 405, (method, path))
            self.assertJSONCT(r)
        self.assertEqual(self.c.get(A("companies/%s.json" % cid)).json["name"], "Widget Shop")

    def test_406_and_delete_without_body(self):
        r = self.c.post(A("companies.json"), raw=b"name=Shop", ctype="application/x-www-form-urlencoded")
        self.assertEqual(r.status, 406)
        self.assertIn("error", r.json)
        r = self.c.post(A("companies.json"), raw=b'{"name": ', ctype="application/json")
        self.assertEqual(r.status, 406)
        r = self.c.post(A("companies.json"), raw=b'{"name":"x"}', ctype=None)
        self.assertEqual(r.status, 406)
        r = self.c.post(A("companies.json"), raw=b'{"name":"x"}', ctype="application/json; charset=utf-8")
        self.assertEqual(r.status, 201)
        cid = r.json["id"]
        r = self.c.put(A("companies/%s.json" % cid), raw=b"<x/>", ctype="text/xml")
        self.assertEqual(r.status, 406)
        r = self.c.post(A("companies.json"), raw=b'"just a string"')
        self.assertEqual((r.status, r.json), (400, {"error": "Expected a JSON object"}))
        r = self.c.delete(A("companies/%s.json" % cid))  # no body, no Content-Type
        self.assertEqual(r.status, 204)

    # -- resources -------------------------------------------------------------------------
    def test_companies_crud(self):
        r = self.c.post(A("companies.json"), {})
        self.assertEqual((r.status, r.json), (400, {"error": "Name can't be blank"}))
        r = self.c.post(A("companies.json"), {"name": "Shop"})
        self.assertEqual(r.status, 201)
        self.assertJSONCT(r)
        o = r.json
        self.assertTrue(o["id"].startswith("COM"))
        self.assertEqual((o["name"], o["status"], o["time_zone"], o["disabled_at"]),
                         ("Shop", "active", "America/New_York", None))
        self.assertRegex(o["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        path = A("companies/%s.json" % o["id"])
        r = self.c.put(path, {"time_zone": "America/Denver", "callscore_enabled": True})
        self.assertEqual(r.status, 200)
        self.assertEqual((r.json["name"], r.json["time_zone"], r.json["callscore_enabled"]),
                         ("Shop", "America/Denver", True))
        r = self.c.put(path, {"time_zone": None, "swap_ppc_override": ""})
        self.assertEqual((r.json["time_zone"], r.json["swap_ppc_override"]), (None, None))
        r = self.c.put(path, {"name": ""})
        self.assertEqual((r.status, r.json), (400, {"error": "Name can't be blank"}))
        r = self.c.delete(path)
        self.assertEqual((r.status, r.raw, r.headers["content-length"]), (204, b"", "0"))
        r = self.c.get(path)
        self.assertEqual((r.json["status"], r.json["name"]), ("disabled", "Shop"))
        self.assertTrue(r.json["disabled_at"].endswith("Z"))
        for i in range(3):
            self.c.post(A("companies.json"), {"name": "C%d" % i})
        r = self.c.get(A("companies.json") + "?per_page=2&page=2")
        self.assertEqual((r.json["page"], r.json["per_page"], r.json["total_pages"],
                          r.json["total_records"], len(r.json["companies"])), (2, 2, 2, 4, 2))

    def test_calls_create_validation_update_and_seed(self):
        body = dict(CALL)
        del body["customer_phone_number"]
        r = self.c.post(A("calls.json"), body)
        self.assertEqual((r.status, r.json), (400, {"error": "Customer phone number can't be blank"}))
        r = self.c.post(A("calls.json"), dict(CALL, business_phone_number="+442071234567"))
        self.assertEqual(r.status, 400)
        self.assertIn("Business phone number", r.json["error"])
        r = self.c.post(A("calls.json"), dict(CALL, customer_phone_number="4044442233",
                                              outbound_greeting_text="hi"))
        self.assertEqual(r.status, 201)
        o = r.json
        self.assertTrue(o["id"].startswith("CAL"))
        self.assertEqual((o["direction"], o["answered"], o["duration"], o["customer_phone_number"],
                          o["outbound_greeting_text"]),
                         ("outbound", None, None, "+14044442233", "hi"))
        self.assertIn("start_time", o)
        path = A("calls/%s.json" % o["id"])
        r = self.c.put(path, {"tags": ["A", "B"], "note": "n1"})
        self.assertEqual((r.status, r.json["tags"], r.json["note"]), (200, ["A", "B"], "n1"))
        r = self.c.put(path, {"tags": ["C"]})
        self.assertEqual((r.json["tags"], r.json["note"]), (["C"], "n1"))
        r = self.c.put(path, {"tags": ["D", "C"], "append_tags": True, "lead_status": "good_lead"})
        self.assertEqual((r.json["tags"], r.json["lead_status"]), (["C", "D"], "good_lead"))
        self.assertNotIn("append_tags", r.json)
        r = self.c.put(path, {"lead_status": "great"})
        self.assertEqual(r.status, 400)
        r = self.c.put(path, {"lead_status": None, "note": ""})
        self.assertEqual((r.status, r.json["lead_status"], r.json["note"]), (200, None, None))
        tags = self.c.get(A("tags.json")).json["tags"]
        self.assertEqual(sorted(t["name"] for t in tags), ["A", "B", "C", "D"])  # auto-created
        self.c.control("POST", "seed", {"resource": "calls",
                                        "object": {"id": "CALold", "lead_status":
                                                   "previously_marked_good_lead"}})
        r = self.c.put(A("calls/CALold.json"), {"lead_status": "good_lead"})
        self.assertEqual(r.status, 400)
        r = self.c.put(A("calls/CALold.json"), {"spam": True})
        self.assertEqual(r.status, 200)
        self.assertEqual(self.c.get(A("calls/CALold.json")).status, 404)

    def test_list_paging_per_page_limit_filters_and_fields(self):
        r = self.c.control("POST", "seed", {"resource": "calls", "count": 537,
                                            "object": {"company_id": "COM1",
                                                       "start_time": "2026-12-01T10:00:00.000-05:00"}})
        self.assertEqual(r, {"count": 537})
        self.c.control("POST", "seed", {"resource": "calls", "count": 3,
                                        "object": {"company_id": "COM2",
                                                   "start_time": "2026-11-20T10:00:00.000-05:00"}})
        r = self.c.get(A("calls.json") + "?per_page=251")
        self.assertEqual((r.status, r.json), (400, {"error": "per_page must be less than or equal to 250"}))
        r = self.c.get(A("calls.json"))
        self.assertEqual((r.json["per_page"], r.json["total_pages"], r.json["total_records"],
                          len(r.json["calls"])), (100, 6, 540, 100))
        r = self.c.get(A("calls.json") + "?per_page=250&page=3&company_id=COM1")
        self.assertEqual((r.json["page"], r.json["total_pages"], r.json["total_records"],
                          len(r.json["calls"])), (3, 3, 537, 37))
        r = self.c.get(A("calls.json") + "?start_date=2026-11-01&end_date=2026-11-30")
        self.assertEqual(r.json["total_records"], 3)
        r = self.c.get(A("calls.json") + "?per_page=1&fields=id,milestones")
        self.assertEqual(r.json["calls"][0]["milestones"], None)
        r = self.c.get(A("calls.json") + "?search=caller%2012")
        self.assertEqual(sorted(c["customer_name"] for c in r.json["calls"]),
                         ["Caller 12", "Caller 120", "Caller 121", "Caller 122", "Caller 123",
                          "Caller 124", "Caller 125", "Caller 126", "Caller 127", "Caller 128",
                          "Caller 129"])

    def test_calls_relative_pagination(self):
        self.c.control("POST", "seed", {"resource": "calls", "count": 5, "object": {}})
        url, seen, pages = A("calls.json") + "?relative_pagination=true&per_page=2", [], 0
        while url:
            r = self.c.get(url.replace("http://127.0.0.1:%d" % self.port, ""))
            self.assertEqual(r.status, 200)
            self.assertNotIn("total_pages", r.json)
            seen += [c["id"] for c in r.json["calls"]]
            pages += 1
            self.assertEqual(r.json["has_next_page"], r.json["next_page"] is not None)
            url = r.json["next_page"]
            if url:
                self.assertTrue(url.startswith("http://127.0.0.1:%d/v3/a/" % self.port), url)
                self.assertIn("offset=%d" % pages, url)
        self.assertEqual((pages, len(set(seen))), (3, 5))
        self.config({"next_page_origin": "http://127.0.0.2:9"})
        r = self.c.get(A("calls.json") + "?relative_pagination=true&per_page=2")
        self.assertTrue(r.json["next_page"].startswith("http://127.0.0.2:9/v3/a/"))

    def test_accounts_paging_and_padding(self):
        accounts = [{"id": "ACC%032d" % i, "name": "A%d" % i} for i in range(1, 6)]
        self.config({"accounts": accounts, "account_padding": 1000,
                     "tokens": {"test-token": {"accounts": [a["id"] for a in accounts]}}})
        r = self.c.get("/v3/a.json?per_page=2&page=3")
        self.assertEqual((r.json["total_pages"], [a["id"] for a in r.json["accounts"]]),
                         (3, [accounts[4]["id"]]))
        self.assertEqual(r.json["accounts"][0]["padding"], "x" * 1000)
        self.config({"generated_accounts": 30000, "account_padding": 0})
        r = self.c.get("/v3/a.json?per_page=250&page=121")
        self.assertEqual((r.json["total_pages"], r.json["total_records"], len(r.json["accounts"])),
                         (121, 30005, 5))
        self.assertEqual(r.json["accounts"][-1]["id"], "ACC9%031d" % 30000)

    def test_text_messages(self):
        r = self.c.post(A("text-messages.json"), SMS, token="limited-token")
        self.assertEqual((r.status, r.json), (403, {"error": MSG_403}))
        r = self.c.post(A("text-messages.json"), dict(SMS, content="x" * 141))
        self.assertEqual(r.status, 400)
        self.assertIn("too long", r.json["error"])
        r = self.c.post(A("text-messages.json"), dict(SMS, media_url="https://x/y.png",
                                                      media_file="abc"))
        self.assertEqual(r.status, 422)
        r = self.c.post(A("text-messages.json"), {"company_id": "COMx", "content": "x"})
        self.assertEqual((r.status, r.json), (400, {"error": "Customer phone number can't be blank"}))
        r = self.c.post(A("text-messages.json"), dict(SMS, content="x" * 140))
        self.assertEqual(r.status, 201)
        conv = r.json
        self.assertRegex(conv["id"], r"^[A-Za-z0-9]{5}$")
        self.assertEqual(conv["recent_messages"][0]["direction"], "outgoing")
        self.assertEqual(conv["recent_messages"][0]["content"], "x" * 140)
        r = self.c.post(A("text-messages.json"), dict(SMS, tracking_number=None, content="again"))
        self.assertEqual((r.status, r.json["id"]), (201, conv["id"]))  # same conversation
        self.assertEqual([m["content"] for m in r.json["recent_messages"]], ["again", "x" * 140])
        # multipart/form-data is accepted on text-messages (MMS upload), and only there
        mp = (b"--XX\r\nContent-Disposition: form-data; name=\"company_id\"\r\n\r\nCOMx\r\n"
              b"--XX\r\nContent-Disposition: form-data; name=\"customer_phone_number\"\r\n\r\n"
              b"+14044442233\r\n--XX\r\nContent-Disposition: form-data; name=\"content\"\r\n\r\n"
              b"pic\r\n--XX\r\nContent-Disposition: form-data; name=\"media_file\"; "
              b"filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNG\r\n--XX--\r\n")
        r = self.c.post(A("text-messages.json"), raw=mp, ctype="multipart/form-data; boundary=XX")
        self.assertEqual((r.status, r.json["recent_messages"][0]["type"]), (201, "mms"))
        r = self.c.post(A("companies.json"), raw=mp, ctype="multipart/form-data; boundary=XX")
        self.assertEqual(r.status, 406)
        r = self.c.get(A("text-messages.json"))
        self.assertEqual(r.json["total_records"], 1)
        self.assertEqual(len(r.json["conversations"]), 1)

    def test_trackers(self):
        r = self.c.post(A("trackers.json"), dict(TRACKER, pool_size=3))
        self.assertEqual(r.status, 400)
        r = self.c.post(A("trackers.json"), {"name": "x"})
        self.assertEqual(r.status, 400)
        r = self.c.post(A("trackers.json"), TRACKER)
        self.assertEqual(r.status, 201)
        o = r.json
        self.assertTrue(o["id"].startswith("TRK"))
        self.assertEqual((o["status"], len(o["tracking_numbers"])), ("active", 4))
        path = A("trackers/%s.json" % o["id"])
        r = self.c.put(path, {"call_flow": {"type": "advanced", "uuid": "u1"}})
        self.assertEqual(r.json["call_flow"], {"type": "advanced", "uuid": "u1"})  # replaced whole
        self.assertEqual(r.json["name"], "Site pool")
        r = self.c.delete(path)
        self.assertEqual((r.status, r.raw), (204, b""))
        self.assertEqual(self.c.get(path).json["status"], "disabled")
        r = self.c.post(A("trackers.json"), dict(TRACKER, type="source", pool_size=None))
        self.assertEqual(r.status, 201)

    def test_form_submissions(self):
        r = self.c.post(A("form_submissions.json"), FORM)
        self.assertEqual(r.status, 201)
        self.assertTrue(r.json["id"].startswith("FOR"))
        r = self.c.post(A("form_submissions.json"), {"form_submission": FORM})
        self.assertEqual((r.status, r.json["form_url"]), (201, FORM["form_url"]))
        r = self.c.post(A("form_submissions.json"), {"company_id": "COMx", "session_id": "SES1",
                                                     "form_data": {"a": 1}})
        self.assertEqual(r.status, 201)
        bad = dict(FORM)
        del bad["referrer"]
        r = self.c.post(A("form_submissions.json"), bad)
        self.assertEqual((r.status, r.json), (400, {"error": "Referrer can't be blank"}))
        r = self.c.post(A("form_submissions.json"), {"form_submission": dict(FORM, form_data=None)})
        self.assertEqual((r.status, r.json), (400, {"error": "Form data can't be blank"}))
        fid = self.c.get(A("form_submissions.json")).json["form_submissions"][0]["id"]
        r = self.c.put(A("form_submissions/%s.json" % fid), {"value": "$5", "tags": ["x"]})
        self.assertEqual((r.status, r.json["value"], r.json["tags"]), (200, "$5", ["x"]))

    def test_tags(self):
        r = self.c.post(A("tags.json"), {"name": "T", "company_id": "COMx", "color": "cyan1"})
        self.assertEqual((r.status, r.json), (400, {"error": "Color is not included in the list"}))
        r = self.c.post(A("tags.json"), {"name": "T"})
        self.assertEqual((r.status, r.json), (400, {"error": "Company can't be blank"}))
        r = self.c.post(A("tags.json"), {"name": "T", "company_id": "COMx", "color": "blue1"})
        self.assertEqual(r.status, 201)
        o = r.json
        self.assertIsInstance(o["id"], int)
        self.assertGreaterEqual(o["id"], 1000)
        self.assertEqual((o["color"], o["status"], o["tag_level"]), ("blue1", "enabled", "company"))
        r = self.c.post(A("tags.json"), {"name": "Acc", "tag_level": "account"})
        self.assertEqual((r.status, r.json["id"]), (201, o["id"] + 1))
        r = self.c.post(A("tags.json"), {"name": "Acc2", "tag_level": "account"},
                        token="limited-token")
        self.assertEqual(r.status, 403)
        path = A("tags/%d.json" % o["id"])
        r = self.c.put(path, {"name": "T2", "disabled": True})
        self.assertEqual((r.status, r.json["name"], r.json["status"]), (200, "T2", "disabled"))
        r = self.c.delete(path)
        self.assertEqual((r.status, r.raw), (204, b""))
        self.assertEqual(self.c.get(path).status, 404)

    def test_users(self):
        r = self.c.post(A("users.json"), USER, token="limited-token")
        self.assertEqual((r.status, r.json), (403, {"error": MSG_403}))
        r = self.c.post(A("users.json"), dict(USER, role="boss"))
        self.assertEqual((r.status, r.json), (400, {"error": "Role is not included in the list"}))
        r = self.c.post(A("users.json"), USER)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.json["id"].startswith("USR"))
        self.assertEqual(r.json["name"], "Ann Lee")
        path = A("users/%s.json" % r.json["id"])
        r = self.c.put(path, {"last_name": "Ng"})
        self.assertEqual((r.status, r.json["name"], r.json["email"]), (200, "Ann Ng", USER["email"]))
        self.assertEqual(self.c.delete(path, token="limited-token").status, 403)
        self.assertEqual(self.c.delete(path).status, 204)
        self.assertEqual(self.c.get(path).status, 404)

    # -- error shapes, quota ---------------------------------------------------------------
    def test_error_shapes(self):
        body = {"caller_id": "+17703334455"}
        self.config({"error_shape": "errors_array"})
        r = self.c.post(A("calls.json"), body)
        self.assertEqual(r.json, {"errors": ["Customer phone number can't be blank",
                                             "Business phone number can't be blank"]})
        self.config({"error_shape": "errors_object"})
        r = self.c.post(A("calls.json"), body)
        self.assertEqual(r.json, {"errors": {
            "customer_phone_number": ["Customer phone number can't be blank"],
            "business_phone_number": ["Business phone number can't be blank"]}})
        r = self.c.get(A("companies.json", ACC2))
        self.assertEqual(r.json, {"errors": {"base": [MSG_403]}})
        self.config({"error_shape": "error"})
        r = self.c.post(A("calls.json"), body)
        self.assertEqual(r.json, {"error": "Customer phone number can't be blank, "
                                           "Business phone number can't be blank"})

    def test_quota_general_429_with_and_without_retry_after(self):
        self.config({"quota": {"general": {"hour": 3}}})
        for _ in range(3):
            self.assertEqual(self.c.get(A("companies.json")).status, 200)
        r = self.c.post(A("companies.json"), COMPANY)
        self.assertEqual((r.status, r.json), (429, {"error": "Too many requests"}))
        self.assertNotIn("retry-after", r.headers)
        self.assertEqual(self.state()["objects"], {})
        self.assertEqual(self.state()["quota_used"][ACC]["general"]["hour"], 3)  # 429 not counted
        self.assertEqual(self.c.get("/v3/a.json").status, 200)  # not account-scoped
        self.config({"quota_retry_after": 7})
        r = self.c.get(A("companies.json"))
        self.assertEqual((r.status, r.headers.get("retry-after")), (429, "7"))
        self.config({"quota_retry_after": "auto", "error_shape": "errors_array"})
        r = self.c.get(A("companies.json"))
        self.assertEqual((r.status, r.json), (429, {"errors": ["Too many requests"]}))
        self.assertTrue(3590 <= int(r.headers["retry-after"]) <= 3600)
        # the other account has its own counters
        self.config({"tokens": {"test-token": {"accounts": [ACC, ACC2]}}})
        self.assertEqual(self.c.get(A("companies.json", ACC2)).status, 200)

    def test_quota_sms_calls_and_per_second(self):
        self.config({"quota": {"sms": {"hour": 1}, "calls": {"day": 1}}})
        self.assertEqual(self.c.post(A("text-messages.json"), SMS).status, 201)
        self.assertEqual(self.c.post(A("text-messages.json"), SMS).status, 429)
        self.assertEqual(self.c.post(A("calls.json"), CALL).status, 201)
        self.assertEqual(self.c.post(A("calls.json"), CALL).status, 429)
        self.assertEqual(self.c.get(A("calls.json")).status, 200)  # general bucket still fine
        q = self.state()["quota_used"][ACC]
        self.assertEqual((q["sms"]["hour"], q["calls"]["day"], q["general"]["hour"]), (1, 1, 3))
        self.c.control("POST", "reset")
        self.config({"quota": {"general": {"second": 2}}, "quota_retry_after": "auto"})
        t0 = time.monotonic()
        self.assertEqual(self.c.get(A("companies.json")).status, 200)
        self.assertEqual(self.c.get(A("companies.json")).status, 200)
        r = self.c.get(A("companies.json"))
        self.assertEqual((r.status, r.headers["retry-after"]), (429, "1"))
        time.sleep(max(0, 1.05 - (time.monotonic() - t0)))
        self.assertEqual(self.c.get(A("companies.json")).status, 200)
        self.config({"quota": {"general": {"second": None, "minute": 1}}})
        self.assertEqual(self.c.get(A("companies.json")).status, 429)

    # -- faults ----------------------------------------------------------------------------
    def test_fail_every_500_and_503(self):
        self.config({"faults": {"fail_every": 2}})
        r1 = self.c.post(A("companies.json"), {"name": "one"})
        r2 = self.c.post(A("companies.json"), {"name": "two"})
        r3 = self.c.post(A("companies.json"), {"name": "three"})
        self.assertEqual((r1.status, r2.status, r3.status), (201, 500, 201))
        self.assertEqual((r2.headers["content-type"], r2.text),
                         ("text/html; charset=utf-8", "<html>Internal Server Error</html>"))
        names = [o["name"] for o in self.state()["objects"]["companies"]]
        self.assertEqual(names, ["one", "three"])  # the failed request was not applied
        self.assertEqual([e["fault"] for e in self.log()], [None, "fail", None])
        self.config({"faults": {"fail_every": 1, "fail_status": 503}})  # counter reset
        r = self.c.get(A("companies.json"))
        self.assertEqual((r.status, r.json), (503, {"error": "Service Unavailable"}))

    def test_hold_while_a_file_exists(self):
        hold = os.path.join(tempfile.mkdtemp(), "hold")
        open(hold, "w").close()
        self.config({"faults": {"hold_while_exists": hold}})
        answers, other = [], Client(self.port)
        t = threading.Thread(target=lambda: answers.append(other.post(A("companies.json"), COMPANY)))
        t.start()
        try:
            # applied at once (the state shows it), answered only once the file is gone
            while not self.state()["objects"].get("companies"):
                time.sleep(0.01)
            self.assertEqual(answers, [])
        finally:
            os.remove(hold)
            t.join(30)
            other.close()
        self.assertEqual(answers[0].status, 201)
        self.assertEqual([e["fault"] for e in self.log()], ["hold"])
        self.assertEqual(self.c.post(A("companies.json"), COMPANY).status, 201)  # no file: no hold
        self.assertEqual([e["fault"] for e in self.log()], ["hold", None])

    def test_delay(self):
        self.config({"faults": {"delay_ms": 300, "delay_every": 2}})
        t = []
        for _ in range(2):
            t0 = time.monotonic()
            self.assertEqual(self.c.post(A("companies.json"), COMPANY).status, 201)
            t.append(time.monotonic() - t0)
        self.assertLess(t[0], 0.25)
        self.assertGreaterEqual(t[1], 0.3)
        self.assertEqual([(e["fault"], e["delay_ms"]) for e in self.log()], [(None, 0), ("delay", 300)])
        # a client that times out first sees no answer, but the request was applied
        self.config({"faults": {"delay_ms": 600, "delay_every": 1}})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.2)
        with self.assertRaises(socket.timeout):
            conn.request("POST", A("companies.json"), json.dumps({"name": "slow"}),
                         {"Authorization": "Token token=test-token",
                          "Content-Type": "application/json"})
            conn.getresponse()
        conn.close()
        self.assertEqual(len(self.state()["objects"]["companies"]), 3)

    def test_drop_before_response(self):
        self.config({"faults": {"drop_before_response_every": 2}})
        self.assertEqual(self.c.post(A("companies.json"), {"name": "a"}).status, 201)
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.c.post(A("companies.json"), {"name": "b"})
        self.assertEqual(self.c.get(A("companies.json")).status, 200)  # reconnects fine
        self.assertEqual([o["name"] for o in self.state()["objects"]["companies"]], ["a"])
        e = self.log()[1]
        self.assertEqual((e["status"], e["fault"], json.loads(e["body"])), (None, "drop_before_response", {"name": "b"}))

    def test_drop_after_commit(self):
        self.config({"faults": {"drop_after_commit_every": 2}})
        self.assertEqual(self.c.get(A("companies.json")).status, 200)  # GETs are not counted
        self.assertEqual(self.c.post(A("companies.json"), {"name": "a"}).status, 201)
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.c.post(A("companies.json"), {"name": "b"})
        st = self.state()
        self.assertEqual([o["name"] for o in st["objects"]["companies"]], ["a", "b"])
        self.assertEqual(st["quota_used"][ACC]["general"]["hour"], 3)
        e = self.log()[-1]
        self.assertEqual((e["status"], e["fault"], e["would_status"]), (None, "drop_after_commit", 201))
        self.assertEqual(json.loads(e["response"])["name"], "b")
        # with a raw socket: not a single response byte arrives
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            self.c.post(A("companies.json"), {"name": "c"})  # 3rd POST
            body = b'{"name":"d"}'
            s.sendall(b"POST " + A("companies.json").encode() + b" HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: Token token=test-token\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.assertEqual(s.recv(100), b"")
        self.assertEqual(len(self.state()["objects"]["companies"]), 4)

    def test_redirect(self):
        self.config({"faults": {"redirect_to": "http://127.0.0.1:9/elsewhere"}})
        r = self.c.post(A("companies.json"), COMPANY)
        self.assertEqual((r.status, r.headers["location"]), (302, "http://127.0.0.1:9/elsewhere"))
        self.assertEqual(self.state()["objects"], {})
        self.assertEqual(self.log()[0]["fault"], "redirect")

    def test_rules(self):
        self.config({"rules": [{"method": "POST", "path_regex": "companies",
                                "status": 422, "body": {"error": "Name is invalid"},
                                "when_body_contains": "BAD"},
                               {"method": "PUT", "path_regex": r"/calls/", "status": 503,
                                "times": 1, "headers": {"Retry-After": "2"}}]})
        r = self.c.post(A("companies.json"), {"name": "BAD one"})
        self.assertEqual((r.status, r.json), (422, {"error": "Name is invalid"}))
        self.assertEqual(self.c.post(A("companies.json"), {"name": "good"}).status, 201)
        self.assertEqual([o["name"] for o in self.state()["objects"]["companies"]], ["good"])
        self.c.control("POST", "seed", {"resource": "calls", "object": {"id": "CAL1"}})
        r = self.c.put(A("calls/CAL1.json"), {"note": "x"})
        self.assertEqual((r.status, r.headers["retry-after"]), (503, "2"))
        self.assertIsNone(self.c.get(A("calls/CAL1.json")).json["note"])
        r = self.c.put(A("calls/CAL1.json"), {"note": "x"})
        self.assertEqual((r.status, r.json["note"]), (200, "x"))
        self.assertEqual([e["fault"] for e in self.log()], ["rule", None, "rule", None, None])

    # -- batches ---------------------------------------------------------------------------
    def test_accept_arrays(self):
        rows = [{"name": "a"}, {"name": "b"}]
        r = self.c.post(A("companies.json"), rows)
        self.assertEqual((r.status, r.json), (400, {"error": "Expected a JSON object"}))
        r = self.c.post(A("companies.json"), {"companies": rows})
        self.assertEqual(r.status, 400)
        self.config({"accept_arrays": True})
        r = self.c.post(A("companies.json"), rows)
        self.assertEqual(r.status, 201)
        self.assertEqual([o["name"] for o in r.json], ["a", "b"])
        r = self.c.post(A("companies.json"), {"batch": [{"name": "c"}]})
        self.assertEqual((r.status, r.json[0]["name"]), (201, "c"))
        r = self.c.post(A("companies.json"), [{"name": "d"}, {"time_zone": "x"}])
        self.assertEqual(r.status, 400)
        self.assertIn("Record 1", r.json["error"])
        self.assertEqual(len(self.state()["objects"]["companies"]), 3)  # all or nothing
        first = self.state()["objects"]["companies"][0]["id"]
        r = self.c.put(A("companies/%s.json" % first), rows)
        self.assertEqual(r.status, 400)
        r = self.c.post(A("users.json"), [USER])
        self.assertEqual(r.status, 201)

    # -- log and HTTP --------------------------------------------------------------------------
    def test_log_lines(self):
        start = os.path.getsize(self.log_path)
        self.c.post(A("companies.json"), COMPANY, quoted=False,
                    headers={"Request-From": "callrail-sqlite", "User-Agent": "t/1"})
        self.c.get(A("companies.json") + "?page=1&per_page=5", token="nope")
        self.c.control("GET", "health")
        mem = self.log()
        with open(self.log_path) as f:
            f.seek(start)
            lines = [json.loads(l) for l in f.read().splitlines()]
        self.assertEqual(lines, mem)
        e1, e2 = mem
        self.assertEqual(set(e1) >= {"seq", "time", "method", "path", "query", "headers", "body",
                                     "status", "account", "fault"}, True)
        self.assertEqual(e2["seq"], e1["seq"] + 1)
        self.assertAlmostEqual(e1["time"], time.time(), delta=10)
        self.assertEqual((e1["method"], e1["path"], e1["query"], e1["status"], e1["account"],
                          e1["fault"]), ("POST", A("companies.json"), "", 201, ACC, None))
        self.assertEqual(e1["headers"]["authorization"], "Token token=test-token")
        self.assertEqual(e1["headers"]["request-from"], "callrail-sqlite")
        self.assertEqual(e1["headers"]["content-type"], "application/json")
        self.assertEqual(json.loads(e1["body"]), COMPANY)
        self.assertEqual((e2["query"], e2["status"], e2["body"]), ("page=1&per_page=5", 401, ""))

    def test_keep_alive_and_connection_close(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        hdr = {"Authorization": "Token token=test-token"}
        conn.request("GET", A("companies.json"), headers=hdr)
        r = conn.getresponse()
        r.read()
        sock = conn.sock
        conn.request("GET", A("companies.json"), headers=hdr)
        r = conn.getresponse()
        r.read()
        self.assertIs(conn.sock, sock)  # same TCP connection reused
        self.assertEqual(r.getheader("Content-Length"), str(len(b'{"page":1,"per_page":100,'
                                                              b'"total_pages":1,"total_records":0,'
                                                              b'"companies":[]}')))
        conn.request("GET", A("companies.json"), headers=dict(hdr, Connection="close"))
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.getheader("Connection"), "close")
        self.assertTrue(r.will_close)
        conn.close()
        # chunked request body and Expect: 100-continue
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("POST", A("companies.json"), body=iter([b'{"name":', b'"chunked"}']),
                     headers=dict(hdr, **{"Content-Type": "application/json"}), encode_chunked=True)
        r = conn.getresponse()
        self.assertEqual((r.status, json.loads(r.read())["name"]), (201, "chunked"))
        conn.close()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            body = b'{"name":"expect"}'
            s.sendall(b"POST " + A("companies.json").encode() + b" HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: Token token=test-token\r\nContent-Type: application/json\r\n"
                      b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
            self.assertEqual(s.recv(25), b"HTTP/1.1 100 Continue\r\n\r\n")
            s.sendall(body)
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 201 Created\r\n"))

    def test_concurrency_and_throughput(self):
        n_threads, per = 8, 250
        errors = []
        self.config({"quota": {"general": {"hour": None, "day": None}}})

        def worker(i):
            c = Client(self.port)
            try:
                for j in range(per):
                    r = c.post(A("companies.json"), {"name": "c%d-%d" % (i, j)})
                    if r.status != 201:
                        errors.append(r.status)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
            finally:
                c.close()

        t0 = time.monotonic()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.monotonic() - t0
        self.assertEqual(errors, [])
        st = self.state()
        self.assertEqual(len(st["objects"]["companies"]), n_threads * per)
        self.assertEqual(len({o["id"] for o in st["objects"]["companies"]}), n_threads * per)
        self.assertEqual([e["seq"] for e in self.log()],
                         list(range(self.log()[0]["seq"], self.log()[0]["seq"] + n_threads * per)))
        rate = n_threads * per / dt
        sys.stderr.write("\n[throughput: %d requests in %.2fs = %.0f req/s] " % (n_threads * per, dt, rate))
        self.assertGreater(rate, 300)


class CommandLineTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.tmp.cleanup()

    def test_initial_config_and_sigterm(self):
        cfg = {"tokens": {"k2": {"accounts": [ACC2], "admin": False}}, "error_shape": "errors_array",
               "faults": {"fail_every": 3}}
        proc, port, _, _ = start_server(self.tmp.name, "cfg", "--config", json.dumps(cfg))
        try:
            c = Client(port)
            r = c.get(A("companies.json", ACC2), token="k2")
            self.assertEqual(r.status, 200)
            r = c.get(A("companies.json"), token="k2")
            self.assertEqual((r.status, r.json), (403, {"errors": [MSG_403]}))
            self.assertEqual(c.get(A("companies.json", ACC2), token="k2").status, 500)
            c.control("POST", "reset")  # back to the startup config, not the defaults
            self.assertEqual(c.control("GET", "config")["faults"]["fail_every"], 3)
            c.close()
        finally:
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(5), 0)
            self.assertLess(time.monotonic() - t0, 3)
            proc.stdout.close()

    def test_max_seconds(self):
        proc, _, _, _ = start_server(self.tmp.name, "short", "--max-seconds", "0.5")
        try:
            self.assertEqual(proc.wait(5), 0)
        finally:
            stop_server(proc)

    def test_sigint_and_fixed_port(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        proc, got, _, _ = start_server(self.tmp.name, "fixed", "--port", str(port))
        try:
            self.assertEqual(got, port)
            proc.send_signal(signal.SIGINT)
            self.assertEqual(proc.wait(5), 0)
        finally:
            stop_server(proc)


if __name__ == "__main__":
    unittest.main(verbosity=2)
