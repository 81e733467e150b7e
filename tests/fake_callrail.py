#!/usr/bin/env python3
"""A fake CallRail API v3 server for tests (Python 3.11, standard library only).

It listens on 127.0.0.1 only and never opens a connection to anything.  It follows
docs/callrail-api.md ("What the fake server mimics"): token auth, per-account sliding quotas,
in-memory resources with CallRail's status codes and bodies, fault injection (5xx, delays,
dropped connections, redirects, per-path rules), a JSON-lines request log, and control
endpoints under /__fake/.

Usage:
    python3 tests/fake_callrail.py [--port 0] [--port-file PATH] [--log PATH]
                                   [--config JSON|@FILE] [--max-seconds 3600]

Readiness: the port file (written atomically) appears once the socket is listening; the line
"listening on 127.0.0.1:PORT" is printed to stdout at the same moment.
"""

import argparse
import bisect
import copy
import email.parser
import email.policy
import json
import math
import os
import random
import re
import select
import signal
import socket
import socketserver
import string
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

ACC1 = "ACC0000000000000000000000000000001"
ACC2 = "ACC0000000000000000000000000000002"

DEFAULT_CONFIG = {
    "tokens": {
        "test-token": {"accounts": [ACC1], "admin": True},
        "limited-token": {"accounts": [ACC1], "admin": False},
    },
    "accounts": [
        {"id": ACC1, "name": "Test Account", "numeric_id": 123456789},
        {"id": ACC2, "name": "Other Account", "numeric_id": 223456789},
    ],
    "quota": {
        "general": {"hour": 1000, "day": 10000},
        "sms": {"hour": 150, "day": 1000},
        "calls": {"hour": 100, "day": 2000},
    },
    "quota_retry_after": None,
    "plain_text_401": False,
    "error_shape": "error",
    "accept_arrays": False,
    "rules": [],
    "faults": {
        "fail_every": 0,
        "fail_status": 500,
        "delay_ms": 0,
        "delay_every": 1,
        "drop_after_commit_every": 0,
        "drop_before_response_every": 0,
        "redirect_to": None,
        "hold_while_exists": None,  # a path: answers wait while that file exists
    },
    # Extra switches (all off by default):
    "sms_max_length": 140,
    "check_references": False,      # company_id in bodies must name a stored company
    "enforce_last_company": False,  # DELETE of the last active company -> 400
    "call_value_500": False,        # PUT calls/{id}.json with "value" -> 500 (seen live)
    "account_padding": 0,           # bytes of filler per account object (big account pages)
    "generated_accounts": 0,        # that many more accounts in GET /v3/a.json, made per page
    "next_page_origin": None,       # origin of relative pagination's next_page (default: own)
}

TAG_COLORS = ("red1", "red2", "orange1", "yellow1", "green1", "blue1", "purple1", "pink1",
              "gray1", "gray2")
USER_ROLES = ("admin", "manager", "reporting")
LEAD_STATUSES = ("good_lead", "not_a_lead")
MSG_403 = "You do not have permission to perform the requested action"
MAX_BODY = 64 * 1024 * 1024

REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
    302: "Found", 303: "See Other", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 408: "Request Timeout",
    409: "Conflict", 413: "Payload Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    422: "Unprocessable Entity", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}

# Resource table.  id: a prefix string ("COM"), "int" (numbers from 1000) or "short" (5 alnum).
# coll / member: verbs allowed on {res}.json and {res}/{id}.json.  delete: "status" (soft,
# status=disabled + disabled_at), "state" (soft, state=disabled) or "hard".  admin: verbs that
# need an admin token (perm "sms" for text messages).  required: fields for generic creates.
RESOURCES = {
    "companies": {"list": "companies", "id": "COM", "coll": ("GET", "POST"),
                  "member": ("GET", "PUT", "DELETE"), "delete": "status"},
    "trackers": {"list": "trackers", "id": "TRK", "coll": ("GET", "POST"),
                 "member": ("GET", "PUT", "DELETE"), "delete": "status"},
    "calls": {"list": "calls", "id": "CAL", "coll": ("GET", "POST"), "member": ("GET", "PUT")},
    "form_submissions": {"list": "form_submissions", "id": "FOR", "coll": ("GET", "POST"),
                         "member": ("GET", "PUT")},
    "tags": {"list": "tags", "id": "int", "coll": ("GET", "POST"),
             "member": ("GET", "PUT", "DELETE"), "delete": "hard"},
    "users": {"list": "users", "id": "USR", "coll": ("GET", "POST"),
              "member": ("GET", "PUT", "DELETE"), "delete": "hard", "create_status": 200,
              "admin": ("POST", "DELETE")},
    "text-messages": {"list": "conversations", "id": "short", "coll": ("GET", "POST"),
                      "member": ("GET",), "admin": ("POST",), "perm": "sms"},
    "sms-threads": {"list": "sms_threads", "id": "short", "coll": ("GET",),
                    "member": ("GET", "PUT")},
    "integrations": {"list": "integrations", "id": "int", "coll": ("GET", "POST"),
                     "member": ("GET", "PUT", "DELETE"), "delete": "state",
                     "admin": ("POST", "PUT", "DELETE"), "required": ("company_id", "type", "config")},
    "integration_triggers": {"list": "integration_criteria", "id": "int", "coll": ("GET", "POST"),
                             "member": ("GET", "PUT", "DELETE"), "delete": "hard",
                             "admin": ("POST", "PUT", "DELETE"), "required": ()},
    "notifications": {"list": "notifications", "id": "int", "coll": ("GET", "POST"),
                      "member": ("GET", "PUT", "DELETE"), "delete": "hard", "required": ()},
    "caller_ids": {"list": "caller_ids", "id": "int", "coll": ("GET", "POST"),
                   "member": ("GET", "DELETE"), "delete": "hard", "admin": ("POST", "DELETE"),
                   "required": ("company_id", "phone_number", "name")},
    "message-flows": {"list": "message-flows", "id": "MFL", "coll": ("GET", "POST"),
                      "member": ("GET", "PUT", "DELETE"), "delete": "hard",
                      "admin": ("POST", "PUT", "DELETE"),
                      "required": ("company_id", "name", "initial_step_id", "steps")},
    "summary_emails": {"list": "summary_emails", "id": "CSS", "coll": ("GET", "POST"),
                       "member": ("GET", "PUT", "DELETE"), "delete": "hard",
                       "required": ("frequency", "config")},
}
# POST-only actions on {res}/{action}.json
ACTIONS = {("companies", "bulk_update"), ("form_submissions", "ignored_fields")}

WINDOWS = (("second", 1.0), ("minute", 60.0), ("hour", 3600.0), ("day", 86400.0))
PAGING_PARAMS = {"page", "per_page", "sort", "order", "fields", "relative_pagination", "offset",
                 "date_range", "start_date", "end_date", "time_zone", "search"}


# ---------------------------------------------------------------------------------------------
# helpers

def deep_merge(dst, src):
    """Merge src into dst: nested objects key by key, anything else replaces."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def now_z():
    d = datetime.now(timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def now_offset():
    d = datetime.now(timezone(timedelta(hours=-5)))
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d-05:00" % (d.microsecond // 1000)


def humanize(field):
    """Rails' humanize: drop a trailing _id, underscores to spaces, capitalise."""
    if field.endswith("_id"):
        field = field[:-3]
    s = field.replace("_", " ").replace("-", " ")
    return s[:1].upper() + s[1:]


def blank(v):
    return v is None or (isinstance(v, str) and v.strip() == "") or v == [] or v == {}


def norm_phone(v):
    """10-digit US/Canadian or +1 E.164 (spaces, dashes, dots, parens ignored) -> +1XXXXXXXXXX."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        v = str(v)
    if not isinstance(v, str):
        return None
    s = re.sub(r"[\s\-().]", "", v)
    if re.fullmatch(r"\d{10}", s):
        return "+1" + s
    if re.fullmatch(r"\+1\d{10}", s):
        return s
    return None


def fmt_phone(e164):
    d = e164[2:]
    return "(%s) %s-%s" % (d[:3], d[3:6], d[6:])


def every(k, n):
    try:
        k = int(k or 0)
    except (TypeError, ValueError):
        return False
    return k > 0 and n % k == 0


class ApiError(Exception):
    """An error answer.  errors: list of (field or None, message)."""

    def __init__(self, status, errors, headers=None):
        super().__init__(status)
        self.status = status
        if isinstance(errors, str):
            errors = [(None, errors)]
        self.errors = errors
        self.headers = headers or []


class Resp:
    __slots__ = ("status", "headers", "body", "drop", "delay_ms", "hold_file")

    def __init__(self, status=200, headers=None, body=b"", drop=False):
        self.status = status
        self.headers = headers or []
        self.body = body
        self.drop = drop
        self.delay_ms = 0
        self.hold_file = None


JSON_CT = ("Content-Type", "application/json; charset=utf-8")


def json_resp(status, obj, headers=None):
    if status == 204:
        return Resp(204, list(headers or []), b"")
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Resp(status, [JSON_CT] + list(headers or []), body)


def text_resp(status, text, ctype="text/plain; charset=utf-8", headers=None):
    return Resp(status, [("Content-Type", ctype)] + list(headers or []), text.encode("utf-8"))


class GeneratedAccounts:
    """The listed accounts followed by n generated ones (ACC9..., every token sees them),
    made only for the page asked: tens of thousands of accounts cost nothing."""

    def __init__(self, app, accs, n):
        self.app, self.accs, self.n = app, accs, n

    def __len__(self):
        return len(self.accs) + self.n

    def __getitem__(self, sl):
        out = []
        for i in range(*sl.indices(len(self))):
            if i < len(self.accs):
                out.append(self.accs[i])
            else:
                k = i - len(self.accs) + 1
                out.append(self.app.account_obj({"id": "ACC9%031d" % k, "name": "Generated %d" % k,
                                                 "numeric_id": 900000000 + k}))
        return out


class Ctx:
    """One API request being processed."""
    __slots__ = ("method", "path", "query", "params", "headers", "body", "body_text", "token",
                 "account", "resource", "kind", "member_id")

    def __init__(self, method, path, query, headers, body, body_text):
        self.method = method
        self.path = path
        self.query = query
        self.params = dict(parse_qsl(query, keep_blank_values=True))
        self.headers = headers
        self.body = body
        self.body_text = body_text
        self.token = None
        self.account = None
        self.resource = None
        self.kind = None
        self.member_id = None


# ---------------------------------------------------------------------------------------------
# the application (all state under one lock)

class App:
    def __init__(self, startup_config, log_path=None):
        self.lock = threading.Lock()
        self.startup_config = copy.deepcopy(startup_config)
        self.seq = 0  # log sequence; never reset, so the log file stays unambiguous
        self.log_file = open(log_path, "a", encoding="utf-8") if log_path else None
        self.stop_event = None
        self._reset_locked()

    # -- state -----------------------------------------------------------------------------
    def _reset_locked(self):
        self.config = copy.deepcopy(self.startup_config)
        self.objects = {}   # account id -> resource -> {str(id): obj}
        self.quota = {}     # account id -> bucket -> [monotonic times]
        self.requests = 0
        self.log = []
        self.counters = {}  # per-resource integer id counters
        self.phone_counter = 0
        self._reset_fault_counters()

    def _reset_fault_counters(self):
        self.fault_n = 0
        self.post_n = 0
        self.rule_fired = {}

    def close(self):
        with self.lock:
            if self.log_file:
                self.log_file.close()
                self.log_file = None

    def store(self, acc_id, res):
        return self.objects.setdefault(acc_id, {}).setdefault(res, {})

    def new_id(self, res):
        kind = RESOURCES[res]["id"] if res in RESOURCES else "int"
        if kind == "int":
            n = self.counters.get(res, 999) + 1
            self.counters[res] = n
            return n
        if kind == "short":
            alphabet = string.ascii_letters + string.digits
            while True:
                cand = "".join(random.choice(alphabet) for _ in range(5))
                if not any(cand in r.get(res, {}) for r in self.objects.values()):
                    return cand
        return kind + uuid.uuid4().hex

    def new_tracking_number(self):
        self.phone_counter += 1
        return "+1470555%04d" % (self.phone_counter % 10000)

    def find_account(self, seg):
        for acc in self.config.get("accounts") or []:
            if not isinstance(acc, dict):
                continue
            if str(acc.get("id")) == seg or (acc.get("numeric_id") is not None
                                             and str(acc.get("numeric_id")) == seg):
                return acc
        return None

    def token_sees(self, token, acc):
        ids = {str(a) for a in (token.get("accounts") or [])}
        return str(acc.get("id")) in ids or (acc.get("numeric_id") is not None
                                             and str(acc.get("numeric_id")) in ids)

    def token_has(self, token, perm):
        if perm in token:
            return bool(token.get(perm))
        return bool(token.get("admin"))

    # -- errors ----------------------------------------------------------------------------
    def error_payload(self, errors):
        shape = self.config.get("error_shape", "error")
        if shape == "errors_array":
            return {"errors": [m for _, m in errors]}
        if shape == "errors_object":
            d = {}
            for f, m in errors:
                d.setdefault(f or "base", []).append(m)
            return {"errors": d}
        return {"error": ", ".join(m for _, m in errors)}

    def error_resp(self, e):
        return json_resp(e.status, self.error_payload(e.errors), e.headers)

    # -- quota -----------------------------------------------------------------------------
    def check_quota(self, acc_id, buckets):
        """Raise a 429 ApiError if one request more would exceed a bucket; else consume."""
        now = time.monotonic()
        qcfg = self.config.get("quota") or {}
        accq = self.quota.setdefault(acc_id, {})
        waits = []
        for b in buckets:
            ts = accq.setdefault(b, [])
            cut = bisect.bisect_right(ts, now - 86400.0)
            if cut:
                del ts[:cut]
            lim = qcfg.get(b) or {}
            if not isinstance(lim, dict):
                continue
            for wname, wsec in WINDOWS:
                limit = lim.get(wname)
                if limit is None or isinstance(limit, bool):
                    continue
                start = bisect.bisect_right(ts, now - wsec)
                count = len(ts) - start
                if count >= limit:
                    idx = start + count - int(limit)
                    waits.append(ts[idx] + wsec - now if 0 <= idx < len(ts) else wsec)
        if waits:
            headers = []
            ra = self.config.get("quota_retry_after")
            if ra == "auto":
                headers.append(("Retry-After", str(max(1, math.ceil(max(waits))))))
            elif isinstance(ra, (int, float)) and not isinstance(ra, bool):
                headers.append(("Retry-After", str(int(ra)) if ra == int(ra) else str(math.ceil(ra))))
            elif isinstance(ra, str) and ra:
                headers.append(("Retry-After", ra))
            raise ApiError(429, "Too many requests", headers)
        for b in buckets:
            accq[b].append(now)

    def quota_used(self, only=None):
        now = time.monotonic()
        out = {}
        for acc_id, buckets in self.quota.items():
            if only and acc_id != only:
                continue
            out[acc_id] = {}
            for b, ts in buckets.items():
                out[acc_id][b] = {w: len(ts) - bisect.bisect_right(ts, now - s) for w, s in WINDOWS}
        return out

    # -- the API entry point ----------------------------------------------------------------
    def api(self, method, path, query, headers, body, t_recv):
        body_text = body.decode("utf-8", errors="replace")
        with self.lock:
            self.requests += 1
            self.fault_n += 1
            n = self.fault_n
            pn = 0
            if method == "POST":
                self.post_n += 1
                pn = self.post_n
            cfg = self.config
            faults = cfg.get("faults") or {}
            ctx = Ctx(method, path, query, headers, body, body_text)
            m = re.match(r"^/v3/a/([^/]+?)(?:\.json)?(?:/|$)", path)
            account_seg = unquote(m.group(1)) if m else None
            fault = None
            extra = {}
            resp = None
            if faults.get("redirect_to"):
                fault = "redirect"
                loc = str(faults["redirect_to"])
                resp = text_resp(302, '<html><body>You are being <a href="%s">redirected</a>.'
                                 '</body></html>' % loc, "text/html; charset=utf-8",
                                 [("Location", loc)])
            elif every(faults.get("drop_before_response_every"), n):
                fault = "drop_before_response"
                resp = Resp(drop=True)
            elif every(faults.get("fail_every"), n):
                fault = "fail"
                resp = self.fail_resp(faults.get("fail_status") or 500)
            else:
                hit = self.match_rule(ctx)
                if hit is not None:
                    fault = "rule"
                    extra["rule"] = hit[0]
                    resp = self.rule_resp(hit[1])
            if resp is None:
                try:
                    resp = self.route(ctx)
                except ApiError as e:
                    resp = self.error_resp(e)
                if pn and every(faults.get("drop_after_commit_every"), pn):
                    fault = "drop_after_commit"
                    extra["would_status"] = resp.status
                    resp.drop = True
            delay = faults.get("delay_ms") or 0
            if delay and every(faults.get("delay_every") or 1, n):
                resp.delay_ms = delay
                if fault is None:
                    fault = "delay"
            # The request is applied now; its answer waits for the test's word.
            hold = faults.get("hold_while_exists")
            if hold and os.path.exists(hold):
                resp.hold_file = hold
                if fault is None:
                    fault = "hold"
            self.seq += 1
            entry = {
                "seq": self.seq,
                "time": t_recv,
                "method": method,
                "path": path,
                "query": query,
                "headers": headers,
                "body": body_text,
                "status": None if resp.drop else resp.status,
                "account": account_seg,
                "account_id": ctx.account.get("id") if ctx.account else None,
                "fault": fault,
                "delay_ms": resp.delay_ms,
                "response": resp.body.decode("utf-8", errors="replace"),
            }
            entry.update(extra)
            self.log.append(entry)
            if self.log_file:
                self.log_file.write(json.dumps(entry, ensure_ascii=False) + "\n")
                self.log_file.flush()
        return resp

    def fail_resp(self, status):
        try:
            status = int(status)
        except (TypeError, ValueError):
            status = 500
        if status == 503:
            return json_resp(503, self.error_payload([(None, "Service Unavailable")]))
        reason = REASONS.get(status, "Error")
        return text_resp(status, "<html>%s</html>" % reason, "text/html; charset=utf-8")

    def match_rule(self, ctx):
        rules = list(self.config.get("rules") or [])
        rules += list((self.config.get("faults") or {}).get("rules") or [])
        for i, r in enumerate(rules):
            if not isinstance(r, dict):
                continue
            m = r.get("method")
            if m and m != "*" and str(m).upper() != ctx.method:
                continue
            rx = r.get("path_regex")
            if rx and not re.search(rx, ctx.path):
                continue
            sub = r.get("when_body_contains")
            if sub is not None and str(sub) not in ctx.body_text:
                continue
            fired = self.rule_fired.get(i, 0)
            times = r.get("times")
            if times is not None and fired >= times:
                continue
            self.rule_fired[i] = fired + 1
            return i, r
        return None

    def rule_resp(self, r):
        if r.get("drop"):
            return Resp(drop=True)
        status = int(r.get("status") or 400)
        headers = [(str(k), str(v)) for k, v in (r.get("headers") or {}).items()]
        body = r.get("body", None)
        if "body" not in r:
            body = self.error_payload([(None, "Rejected by fake rule")])
        if status == 204:
            return Resp(204, headers, b"")
        if isinstance(body, str):
            return text_resp(status, body, r.get("content_type") or "text/plain; charset=utf-8",
                             headers)
        resp = json_resp(status, body, headers)
        if r.get("content_type"):
            resp.headers[0] = ("Content-Type", r["content_type"])
        return resp

    # -- auth and routing --------------------------------------------------------------------
    def authenticate(self, value):
        if value is None:
            return None
        m = re.fullmatch(r'\s*Token\s+token\s*=\s*(?:"([^"]*)"|([^\s",]+))\s*(?:,.*)?', value)
        if not m:
            return None
        key = m.group(1) if m.group(1) is not None else m.group(2)
        tok = (self.config.get("tokens") or {}).get(key)
        return tok if isinstance(tok, dict) else None

    def unauthorized(self):
        hdr = [("WWW-Authenticate", 'Token realm="Application"')]
        if self.config.get("plain_text_401"):
            return text_resp(401, "HTTP Token: Access denied.", headers=hdr)
        return json_resp(401, self.error_payload([(None, "Access denied")]), hdr)

    def route(self, ctx):
        tok = self.authenticate(ctx.headers.get("authorization"))
        if tok is None:
            return self.unauthorized()
        ctx.token = tok
        method = ctx.method
        if method == "PATCH":
            raise ApiError(405, "Method not allowed")
        path = ctx.path
        if path == "/v3/a.json":
            if method != "GET":
                raise ApiError(405, "Method not allowed", [("Allow", "GET")])
            return self.list_accounts(ctx)
        m = re.match(r"^/v3/a/([^/]+)(/.*)?$", path)
        if not m:
            raise ApiError(404, "Not found")
        seg, rest = m.group(1), m.group(2)
        if rest is None:
            if not seg.endswith(".json"):
                raise ApiError(404, "Not found")
            seg = seg[:-5]
        acc = self.find_account(unquote(seg))
        if acc is None:
            raise ApiError(404, "Not found")
        if not self.token_sees(tok, acc):
            raise ApiError(403, MSG_403)
        ctx.account = acc
        acc_id = acc["id"]
        if rest is None:
            if method != "GET":
                raise ApiError(405, "Method not allowed", [("Allow", "GET")])
            self.check_quota(acc_id, ["general"])
            return json_resp(200, self.account_obj(acc))
        parts = rest[1:].split("/")
        if parts[-1].endswith(".json"):
            parts[-1] = parts[-1][:-5]
        elif not (method == "GET" and parts == ["summary_emails"]):
            raise ApiError(404, "Not found")
        parts = [unquote(p) for p in parts]
        if any(p == "" for p in parts) or len(parts) > 2 or parts[0] not in RESOURCES:
            raise ApiError(404, "Not found")
        res = parts[0]
        spec = RESOURCES[res]
        ctx.resource = res
        if len(parts) == 1:
            ctx.kind = "collection"
            allowed = spec["coll"]
        elif (res, parts[1]) in ACTIONS:
            ctx.kind = "action"
            ctx.member_id = parts[1]
            allowed = ("POST",)
        else:
            ctx.kind = "member"
            ctx.member_id = parts[1]
            allowed = spec["member"]
        if method not in allowed:
            raise ApiError(405, "Method not allowed", [("Allow", ", ".join(allowed))])
        buckets = ["general"]
        if method == "POST" and ctx.kind == "collection":
            if res == "text-messages":
                buckets.append("sms")
            elif res == "calls":
                buckets.append("calls")
        self.check_quota(acc_id, buckets)
        if method in spec.get("admin", ()) and not self.token_has(tok, spec.get("perm", "admin")):
            raise ApiError(403, MSG_403)
        data = None
        if method in ("POST", "PUT"):
            data = self.parse_body(ctx)
        if ctx.kind == "action":
            return self.action(ctx, data)
        if ctx.kind == "collection":
            if method == "GET":
                return self.list_objects(ctx)
            return self.create(ctx, data)
        obj = self.lookup(ctx)
        if method == "GET":
            return json_resp(200, obj)
        if method == "PUT":
            self.update(ctx, obj, data)
            return json_resp(200, obj)
        return self.delete(ctx, obj)

    def parse_body(self, ctx):
        body = ctx.body
        is_create = ctx.kind == "collection" and ctx.method == "POST"
        if not body.strip():
            return {}
        ctype = ctx.headers.get("content-type", "")
        mtype = ctype.split(";", 1)[0].strip().lower()
        if mtype == "multipart/form-data" and is_create and ctx.resource == "text-messages":
            return self.parse_multipart(ctype, body)
        if mtype != "application/json":
            raise ApiError(406, "Request body must be JSON (Content-Type: application/json)")
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise ApiError(406, "Request body is not valid JSON")
        items = None
        if isinstance(data, list):
            items = data
        elif (is_create and isinstance(data, dict) and len(data) == 1):
            (v,) = data.values()
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                items = v
        if items is not None:
            if not (is_create and self.config.get("accept_arrays")):
                raise ApiError(400, "Expected a JSON object")
            if not all(isinstance(x, dict) for x in items):
                raise ApiError(400, "Expected a JSON object")
            return items
        if not isinstance(data, dict):
            raise ApiError(400, "Expected a JSON object")
        return data

    def parse_multipart(self, ctype, body):
        try:
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body)
            if not msg.is_multipart():
                raise ValueError("not multipart")
            out = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if not name:
                    continue
                fname = part.get_filename()
                payload = part.get_payload(decode=True) or b""
                if fname is not None:
                    out[name] = {"filename": fname, "content_type": part.get_content_type(),
                                 "size": len(payload)}
                else:
                    out[name] = payload.decode("utf-8", errors="replace")
            return out
        except Exception:
            raise ApiError(406, "Malformed multipart body")

    def lookup(self, ctx):
        obj = self.store(ctx.account["id"], ctx.resource).get(ctx.member_id)
        if obj is None or (ctx.resource == "calls" and obj.get("spam") is True):
            raise ApiError(404, "Not found")
        return obj

    # -- reads -----------------------------------------------------------------------------
    def account_obj(self, acc):
        out = {"id": acc.get("id"), "name": acc.get("name"), "outbound_recording_enabled": False,
               "numeric_id": acc.get("numeric_id"), "hipaa_account": False}
        out.update(acc)
        if self.config.get("account_padding"):
            out["padding"] = "x" * int(self.config["account_padding"])
        return out

    # -- list paging: page/per_page, relative pagination (calls), date filters, fields --------
    def paginate(self, ctx, key, items):
        per_page = self._per_page(ctx)
        items = self._search(ctx, self._date_filter(ctx, items))
        if ctx.resource == "calls" and ctx.params.get("relative_pagination") == "true":
            return self._relative_page(ctx, key, items, per_page)
        try:
            page = max(1, int(ctx.params.get("page", 1)))
        except ValueError:
            page = 1
        total = len(items)
        total_pages = max(1, math.ceil(total / per_page))
        chunk = self._fields(ctx, items[(page - 1) * per_page: page * per_page])
        return json_resp(200, {"page": page, "per_page": per_page, "total_pages": total_pages,
                               "total_records": total, key: chunk})

    @staticmethod
    def _per_page(ctx):
        """per_page: 100 by default, at most 250 (more is a 400, as CallRail answers)."""
        try:
            per_page = max(1, int(ctx.params.get("per_page", 100)))
        except ValueError:
            per_page = 100
        if per_page > 250:
            raise ApiError(400, "per_page must be less than or equal to 250")
        return per_page

    @staticmethod
    def _date_filter(ctx, items):
        """start_date/end_date (inclusive days) against start_time (calls) or created_at."""
        lo, hi = ctx.params.get("start_date"), ctx.params.get("end_date")
        if not lo and not hi:
            return items

        def day(o):
            return str(o.get("start_time") or o.get("created_at") or "")[:10]
        return [o for o in items if (not lo or day(o) >= lo[:10]) and (not hi or day(o) <= hi[:10])]

    @staticmethod
    def _search(ctx, items):
        """search=text: items whose name or customer_name contains it (any case)."""
        want = ctx.params.get("search", "").lower()
        if not want:
            return items
        return [o for o in items
                if want in str(o.get("name") or o.get("customer_name") or "").lower()]

    @staticmethod
    def _fields(ctx, chunk):
        """fields=a,b asks for extra fields: each item gets them (null when it has none)."""
        extra = [f for f in ctx.params.get("fields", "").split(",") if f]
        if not extra:
            return chunk
        out = []
        for o in chunk:
            o = dict(o)
            for f in extra:
                o.setdefault(f, None)
            out.append(o)
        return out

    def _relative_page(self, ctx, key, items, per_page):
        """CallRail's relative pagination: offset is the 0-based page; next_page is an absolute
        URL (on this server, or on config next_page_origin when set)."""
        try:
            offset = max(0, int(ctx.params.get("offset", 0)))
        except ValueError:
            offset = 0
        chunk = self._fields(ctx, items[offset * per_page:(offset + 1) * per_page])
        has_next = (offset + 1) * per_page < len(items)
        origin = self.config.get("next_page_origin") or "http://" + ctx.headers.get("host", "")
        params = dict(ctx.params, offset=str(offset + 1), per_page=str(per_page))
        nxt = origin + ctx.path + "?" + urlencode(params) if has_next else None
        return json_resp(200, {"has_next_page": has_next, "next_page": nxt, key: chunk})

    def list_accounts(self, ctx):
        accs = [self.account_obj(a) for a in (self.config.get("accounts") or [])
                if isinstance(a, dict) and self.token_sees(ctx.token, a)]
        n = int(self.config.get("generated_accounts") or 0)
        return self.paginate(ctx, "accounts", GeneratedAccounts(self, accs, n) if n else accs)

    def list_objects(self, ctx):
        items = list(self.store(ctx.account["id"], ctx.resource).values())
        if ctx.resource == "calls":
            items = [o for o in items if o.get("spam") is not True]
        for k, v in ctx.params.items():
            if k in PAGING_PARAMS:
                continue
            items = [o for o in items if k in o and self._match(o[k], v)]
        return self.paginate(ctx, RESOURCES[ctx.resource]["list"], items)

    @staticmethod
    def _match(value, want):
        if value is None:
            return want in ("", "null")
        if isinstance(value, bool):
            return want == ("true" if value else "false")
        return str(value) == want

    # -- creates ---------------------------------------------------------------------------
    def create(self, ctx, data):
        res = ctx.resource
        prep = getattr(self, "prep_" + res.replace("-", "_"), self.prep_generic)
        make = getattr(self, "make_" + res.replace("-", "_"), self.make_generic)
        status = RESOURCES[res].get("create_status", 201)
        if isinstance(data, list):  # batch (accept_arrays)
            preps = []
            for i, item in enumerate(data):
                try:
                    preps.append(prep(ctx, item))
                except ApiError as e:
                    e.errors = [(f, "Record %d: %s" % (i, m)) for f, m in e.errors]
                    raise
            return json_resp(201, [make(ctx, p) for p in preps])
        return json_resp(status, make(ctx, prep(ctx, data)))

    def _save(self, ctx, obj):
        self.store(ctx.account["id"], ctx.resource)[str(obj["id"])] = obj
        return obj

    def _base(self, ctx, data, defaults):
        obj = {"id": self.new_id(ctx.resource)}
        obj.update(defaults)
        for k, v in data.items():
            if k not in ("id", "created_at"):
                obj[k] = v
        obj.setdefault("created_at", now_z())
        return obj

    def _required(self, data, fields):
        return [(f, "%s can't be blank" % humanize(f)) for f in fields if blank(data.get(f))]

    def _check_company(self, ctx, data, errors):
        if not self.config.get("check_references"):
            return
        cid = data.get("company_id")
        if cid is not None and str(cid) not in self.store(ctx.account["id"], "companies"):
            errors.append(("company_id", "Company is invalid"))

    def _phone(self, data, field, errors, out):
        v = data.get(field)
        if blank(v):
            return
        p = norm_phone(v)
        if p is None:
            errors.append((field, "%s is not a valid phone number" % humanize(field)))
        else:
            out[field] = p

    def prep_generic(self, ctx, data):
        errors = self._required(data, RESOURCES[ctx.resource].get("required", ()))
        if errors:
            raise ApiError(400, errors)
        return data

    def make_generic(self, ctx, data):
        res = ctx.resource
        defaults = {}
        if res == "integrations":
            defaults = {"state": "active"}
            if data.get("type") == "Webhooks":
                defaults["signing_key"] = uuid.uuid4().hex
        elif res == "caller_ids":
            defaults = {"validation_code": "%06d" % random.randint(0, 999999)}
        return self._save(ctx, self._base(ctx, data, defaults))

    # companies
    def prep_companies(self, ctx, data):
        errors = self._required(data, ["name"])
        if errors:
            raise ApiError(400, errors)
        return data

    def make_companies(self, ctx, data):
        defaults = {"name": None, "status": "active", "time_zone": "America/New_York",
                    "disabled_at": None, "callscore_enabled": False, "callscribe_enabled": False,
                    "lead_scoring_enabled": False, "swap_exclude_jquery": None,
                    "swap_ppc_override": None, "swap_landing_override": None,
                    "swap_cookie_duration": 6, "external_form_capture": False,
                    "keyword_spotting_enabled": False}
        obj = self._base(ctx, data, defaults)
        if blank(obj.get("time_zone")):
            obj["time_zone"] = "America/New_York"
        obj["script_url"] = "//cdn.callrail.com/companies/%s/%s/12/swap.js" % (
            random.randint(100000000, 999999999), uuid.uuid4().hex[:20])
        return self._save(ctx, obj)

    # trackers
    def prep_trackers(self, ctx, data):
        errors = self._required(data, ["name", "type", "company_id", "call_flow", "source"])
        t = data.get("type")
        if not blank(t) and t not in ("source", "session"):
            errors.append(("type", "Type is not included in the list"))
        if not blank(data.get("call_flow")) and not isinstance(data.get("call_flow"), dict):
            errors.append(("call_flow", "Call flow is invalid"))
        if not blank(data.get("source")) and not isinstance(data.get("source"), dict):
            errors.append(("source", "Source is invalid"))
        if t == "session":
            ps = data.get("pool_size")
            if isinstance(ps, bool) or not isinstance(ps, int) or not 4 <= ps <= 50:
                errors.append(("pool_size", "Pool size must be between 4 and 50"))
        self._check_company(ctx, data, errors)
        if errors:
            raise ApiError(400, errors)
        return data

    def make_trackers(self, ctx, data):
        count = data.get("pool_size") if data.get("type") == "session" else 1
        cf = data.get("call_flow") or {}
        defaults = {"status": "active", "disabled_at": None, "whisper_message": None,
                    "sms_enabled": False, "sms_supported": True,
                    "destination_number": cf.get("destination_number"),
                    "tracking_numbers": [self.new_tracking_number() for _ in range(count)]}
        return self._save(ctx, self._base(ctx, data, defaults))

    # calls
    def prep_calls(self, ctx, data):
        fields = ["caller_id", "customer_phone_number", "business_phone_number"]
        errors = self._required(data, fields)
        out = dict(data)
        for f in fields:
            self._phone(data, f, errors, out)
        if errors:
            raise ApiError(400, errors)
        return out

    def make_calls(self, ctx, data):
        defaults = {"answered": None, "direction": "outbound", "duration": None,
                    "recording": None, "recording_duration": None, "recording_player": None,
                    "start_time": now_offset(), "tracking_phone_number": data.get("caller_id"),
                    "voicemail": False, "tags": [], "note": None, "value": None,
                    "lead_status": None, "customer_name": None, "spam": False}
        return self._save(ctx, self._base(ctx, data, defaults))

    # form submissions
    @staticmethod
    def _unwrap_form(data):
        if isinstance(data.get("form_submission"), dict):
            out = {k: v for k, v in data.items() if k != "form_submission"}
            out.update(data["form_submission"])
            return out
        return data

    def prep_form_submissions(self, ctx, data):
        data = self._unwrap_form(data)
        errors = self._required(data, ["company_id", "form_data"])
        if not blank(data.get("form_data")) and not isinstance(data.get("form_data"), dict):
            errors.append(("form_data", "Form data is invalid"))
        if blank(data.get("session_id")):
            errors += self._required(data, ["referrer", "referring_url", "landing_page_url",
                                            "form_url"])
        self._check_company(ctx, data, errors)
        if errors:
            raise ApiError(400, errors)
        return data

    def make_form_submissions(self, ctx, data):
        cid = data.get("company_id")
        first = not any(o.get("company_id") == cid
                        for o in self.store(ctx.account["id"], "form_submissions").values())
        defaults = {"person_id": "PER" + uuid.uuid4().hex, "form_url": None,
                    "landing_page_url": None, "referrer": None, "referring_url": None,
                    "submitted_at": now_z(), "first_form": first, "tags": [], "note": None,
                    "value": None, "lead_status": None}
        return self._save(ctx, self._base(ctx, data, defaults))

    # tags
    def prep_tags(self, ctx, data):
        errors = self._required(data, ["name"])
        level = data.get("tag_level")
        if blank(level):
            level = "company"
        if level not in ("company", "account"):
            errors.append(("tag_level", "Tag level is not included in the list"))
        if level == "account" and not self.token_has(ctx.token, "admin"):
            raise ApiError(403, MSG_403)
        if level == "company":
            errors += self._required(data, ["company_id"])
        color = data.get("color")
        if not blank(color) and color not in TAG_COLORS:
            errors.append(("color", "Color is not included in the list"))
        self._check_company(ctx, data, errors)
        if errors:
            raise ApiError(400, errors)
        out = dict(data)
        out["tag_level"] = level
        if blank(color):
            out["color"] = "gray1"
        return out

    def make_tags(self, ctx, data):
        defaults = {"company_id": None, "status": "enabled",
                    "background_color": data.get("color")}
        obj = self._base(ctx, data, defaults)
        if obj["tag_level"] == "account":
            obj["company_id"] = None
        return self._save(ctx, obj)

    # users
    def prep_users(self, ctx, data):
        errors = self._required(data, ["first_name", "last_name", "email", "role"])
        if not blank(data.get("role")) and data.get("role") not in USER_ROLES:
            errors.append(("role", "Role is not included in the list"))
        email_ = data.get("email")
        if not blank(email_) and (not isinstance(email_, str) or "@" not in email_):
            errors.append(("email", "Email is invalid"))
        if errors:
            raise ApiError(400, errors)
        return data

    def make_users(self, ctx, data):
        defaults = {"companies": [], "accepted": False}
        obj = self._base(ctx, data, defaults)
        obj["name"] = "%s %s" % (obj.get("first_name"), obj.get("last_name"))
        return self._save(ctx, obj)

    # text messages
    def prep_text_messages(self, ctx, data):
        errors = self._required(data, ["company_id", "customer_phone_number", "content"])
        out = dict(data)
        self._phone(data, "customer_phone_number", errors, out)
        self._phone(data, "tracking_number", errors, out)
        content = data.get("content")
        limit = self.config.get("sms_max_length") or 140
        if not blank(content):
            if not isinstance(content, str):
                errors.append(("content", "Content is invalid"))
            elif len(content) > limit:
                errors.append(("content", "Content is too long (maximum is %d characters)" % limit))
        self._check_company(ctx, data, errors)
        if not blank(data.get("media_url")) and not blank(data.get("media_file")):
            raise ApiError(422, [("media_url", "Only one of media_url or media_file may be sent")])
        if errors:
            raise ApiError(400, errors)
        return out

    def make_text_messages(self, ctx, data):
        store = self.store(ctx.account["id"], "text-messages")
        cid, cpn = data.get("company_id"), data.get("customer_phone_number")
        tn = data.get("tracking_number")
        tracker_id = None
        if tn:
            for t in self.store(ctx.account["id"], "trackers").values():
                if tn in (t.get("tracking_numbers") or []):
                    tracker_id = t["id"]
                    break
        conv = None
        for c in store.values():
            if c.get("company_id") == cid and c.get("customer_phone_number") == cpn:
                conv = c
                break
        ts = now_offset()
        media = []
        if not blank(data.get("media_url")):
            media = [data["media_url"]]
        elif isinstance(data.get("media_file"), dict):
            media = ["https://media.example.invalid/" + str(data["media_file"].get("filename"))]
        msg = {"direction": "outgoing", "content": data.get("content"), "created_at": ts,
               "type": "mms" if media else "sms", "media_urls": media}
        if conv is None:
            conv = {"id": self.new_id("text-messages"), "company_id": cid,
                    "initial_tracker_id": tracker_id, "current_tracker_id": tracker_id,
                    "customer_name": None, "customer_phone_number": cpn,
                    "initial_tracking_number": tn, "current_tracking_number": tn,
                    "last_message_at": ts, "state": "active",
                    "formatted_customer_phone_number": fmt_phone(cpn),
                    "formatted_initial_tracking_number": fmt_phone(tn) if tn else None,
                    "formatted_current_tracking_number": fmt_phone(tn) if tn else None,
                    "formatted_customer_name": fmt_phone(cpn), "recent_messages": [],
                    "created_at": now_z()}
            store[conv["id"]] = conv
        else:
            conv["last_message_at"] = ts
            if tn:
                conv["current_tracking_number"] = tn
                conv["formatted_current_tracking_number"] = fmt_phone(tn)
                if tracker_id:
                    conv["current_tracker_id"] = tracker_id
        conv["recent_messages"].insert(0, msg)
        return conv

    # -- special actions ---------------------------------------------------------------------
    def action(self, ctx, data):
        if isinstance(data, list):
            raise ApiError(400, "Expected a JSON object")
        acc_id = ctx.account["id"]
        if (ctx.resource, ctx.member_id) == ("companies", "bulk_update"):
            ids = data.get("company_ids")
            if not isinstance(ids, list) or not ids:
                raise ApiError(400, [("company_ids", "Company ids can't be blank")])
            comps = self.store(acc_id, "companies")
            targets = list(comps.values()) if ids == ["all"] else [
                comps[str(i)] for i in ids if str(i) in comps]
            if "external_form_capture" in data:
                for c in targets:
                    c["external_form_capture"] = data["external_form_capture"]
            return json_resp(200, {"updated_records": len(targets)})
        errors = self._required(data, ["company_ids", "field_names"])
        if errors:
            raise ApiError(400, errors)
        return json_resp(200, {"message": "Ingored form fields created"})

    # -- updates ---------------------------------------------------------------------------
    def update(self, ctx, obj, data):
        res = ctx.resource
        errors = []
        new = dict(obj)
        skip = {"id", "created_at", "append_tags"}
        if res in ("calls", "form_submissions", "sms-threads"):
            skip |= {"tags", "lead_status"}
            if "tags" in data:
                tags = data["tags"]
                if blank(tags):
                    new["tags"] = []
                elif not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                    errors.append(("tags", "Tags must be an array of tag names"))
                else:
                    base = list(obj.get("tags") or []) if data.get("append_tags") is True else []
                    for t in tags:
                        if t not in base:
                            base.append(t)
                    new["tags"] = base
            if "lead_status" in data:
                ls = data["lead_status"]
                if blank(ls):
                    new["lead_status"] = None
                elif ls not in LEAD_STATUSES:
                    errors.append(("lead_status", "Lead status is not included in the list"))
                elif ls == "good_lead" and obj.get("lead_status") == "previously_marked_good_lead":
                    errors.append(("lead_status",
                                   "Lead status cannot be changed from previously marked good lead"))
                else:
                    new["lead_status"] = ls
            if res == "calls" and "value" in data and self.config.get("call_value_500"):
                raise ApiError(500, "Internal Server Error")
        if res in ("companies", "tags", "message-flows") and "name" in data and blank(data["name"]):
            errors.append(("name", "Name can't be blank"))
            skip.add("name")
        if res == "trackers":
            if "call_flow" in data and not blank(data["call_flow"]) and not isinstance(
                    data["call_flow"], dict):
                errors.append(("call_flow", "Call flow is invalid"))
            if "pool_size" in data and obj.get("type") == "session":
                ps = data["pool_size"]
                if isinstance(ps, bool) or not isinstance(ps, int) or not 4 <= ps <= 50:
                    errors.append(("pool_size", "Pool size must be between 4 and 50"))
                elif ps < (obj.get("pool_size") or 0):
                    errors.append(("pool_size", "Pool size can only be increased"))
                else:
                    extra = ps - len(new.get("tracking_numbers") or [])
                    if extra > 0:
                        new["tracking_numbers"] = list(new.get("tracking_numbers") or []) + [
                            self.new_tracking_number() for _ in range(extra)]
        if res == "tags":
            if "color" in data and not blank(data["color"]) and data["color"] not in TAG_COLORS:
                errors.append(("color", "Color is not included in the list"))
            if "color" in data and not blank(data["color"]):
                new["background_color"] = data["color"]
            if "disabled" in data:
                new["status"] = "disabled" if data["disabled"] is True else "enabled"
        if res == "users":
            if "role" in data and data["role"] not in USER_ROLES:
                errors.append(("role", "Role is not included in the list"))
            for f in ("first_name", "last_name", "email"):
                if f in data and blank(data[f]):
                    errors.append((f, "%s can't be blank" % humanize(f)))
        if errors:
            raise ApiError(400, errors)
        for k, v in data.items():
            if k in skip:
                continue
            new[k] = None if (isinstance(v, str) and v == "") else v
        if res == "users":
            new["name"] = "%s %s" % (new.get("first_name"), new.get("last_name"))
        if res in ("calls", "form_submissions", "sms-threads") and new.get("tags"):
            self._autocreate_tags(ctx, new.get("company_id"), new["tags"])
        obj.clear()
        obj.update(new)

    def _autocreate_tags(self, ctx, company_id, names):
        store = self.store(ctx.account["id"], "tags")
        have = {(t.get("company_id"), t.get("name")) for t in store.values()}
        have_acc = {t.get("name") for t in store.values() if t.get("tag_level") == "account"}
        for name in names:
            if (company_id, name) in have or name in have_acc:
                continue
            tid = self.new_id("tags")
            store[str(tid)] = {"id": tid, "name": name, "tag_level": "company", "color": "gray1",
                               "background_color": "gray1", "company_id": company_id,
                               "status": "enabled", "created_at": now_z()}
            have.add((company_id, name))

    # -- deletes ---------------------------------------------------------------------------
    def delete(self, ctx, obj):
        res = ctx.resource
        mode = RESOURCES[res].get("delete", "hard")
        if mode == "status":
            if (res == "companies" and self.config.get("enforce_last_company")
                    and obj.get("status") == "active"):
                active = [c for c in self.store(ctx.account["id"], "companies").values()
                          if c.get("status") == "active"]
                if len(active) <= 1:
                    raise ApiError(400, "You must have at least one active company.")
            if obj.get("status") != "disabled":
                obj["status"] = "disabled"
                obj["disabled_at"] = now_z()
        elif mode == "state":
            obj["state"] = "disabled"
        else:
            del self.store(ctx.account["id"], res)[str(obj["id"])]
        return Resp(204, [], b"")

    # -- control endpoints -------------------------------------------------------------------
    def quiesce(self, params):
        """GET /__fake/quiesce[?timeout=S]: a barrier.  Answers once no
        connection but this one is open or waiting to be accepted, i.e. every
        request a client wrote (even one killed since) is handled and logged;
        409 after timeout seconds (default 30) if clients stay connected."""
        deadline = time.time() + float(params.get("timeout", 30))
        while not self.server.quiet():
            if time.time() > deadline:
                return json_resp(409, {"error": "connections still open",
                                       "open": self.server.open_connections})
            time.sleep(0.01)
        return json_resp(200, {"ok": True})

    def control(self, method, path, query, body):
        params = dict(parse_qsl(query, keep_blank_values=True))
        name = path[len("/__fake/"):].rstrip("/")
        routes = {"health": ("GET",), "config": ("GET", "POST"), "reset": ("POST",),
                  "state": ("GET",), "log": ("GET",), "seed": ("POST",), "shutdown": ("POST",),
                  "quiesce": ("GET",)}
        if name not in routes:
            return json_resp(404, {"error": "Not found"})
        if method not in routes[name]:
            return json_resp(405, {"error": "Method not allowed"},
                             [("Allow", ", ".join(routes[name]))])
        data = None
        if method == "POST":
            try:
                data = json.loads(body.decode("utf-8")) if body.strip() else {}
            except (ValueError, UnicodeDecodeError):
                return json_resp(400, {"error": "control body is not valid JSON"})
        if name == "quiesce":
            return self.quiesce(params)
        with self.lock:
            if name == "health":
                return json_resp(200, {"ok": True})
            if name == "config":
                if method == "POST":
                    if not isinstance(data, dict):
                        return json_resp(400, {"error": "config must be a JSON object"})
                    deep_merge(self.config, data)
                    self._reset_fault_counters()
                return json_resp(200, self.config)
            if name == "reset":
                self._reset_locked()
                return json_resp(200, {"ok": True})
            if name == "state":
                only = params.get("account")
                if only:
                    acc = self.find_account(only)
                    only = acc["id"] if acc else only
                flat = {}
                by_acc = {}
                for acc_id, resmap in self.objects.items():
                    if only and acc_id != only:
                        continue
                    for res, objs in resmap.items():
                        if not objs:
                            continue
                        flat.setdefault(res, []).extend(objs.values())
                        by_acc.setdefault(acc_id, {})[res] = list(objs.values())
                return json_resp(200, {"requests": self.requests, "objects": flat,
                                       "objects_by_account": by_acc,
                                       "quota_used": self.quota_used(only),
                                       "fault_counter": self.fault_n,
                                       "post_counter": self.post_n})
            if name == "log":
                try:
                    since = int(params.get("since", 0))
                except ValueError:
                    since = 0
                return json_resp(200, [e for e in self.log if e["seq"] > since])
            if name == "seed":
                return self.seed(data)
            if name == "shutdown":
                if self.stop_event is not None:
                    threading.Timer(0.05, self.stop_event.set).start()
                return json_resp(200, {"ok": True})
        return json_resp(404, {"error": "Not found"})

    def seed(self, data):
        if not isinstance(data, dict):
            return json_resp(400, {"error": "seed body must be a JSON object"})
        res = data.get("resource")
        if res not in RESOURCES:
            return json_resp(400, {"error": "unknown resource %r" % (res,)})
        acc_seg = data.get("account")
        if acc_seg is None:
            accs = self.config.get("accounts") or []
            acc = accs[0] if accs else None
        else:
            acc = self.find_account(str(acc_seg))
        if acc is None:
            return json_resp(400, {"error": "unknown account %r" % (acc_seg,)})
        many = "objects" in data or "count" in data
        objs = self._seed_copies(data) if "count" in data else (
            data.get("objects") if many else [data.get("object") or {}])
        if not isinstance(objs, list) or not all(isinstance(o, dict) for o in objs):
            return json_resp(400, {"error": "object(s) must be JSON objects"})
        out = []
        store = self.store(acc["id"], res)
        for o in objs:
            o = copy.deepcopy(o)
            if "id" not in o:
                o["id"] = self.new_id(res)
            elif RESOURCES[res]["id"] == "int" and isinstance(o["id"], int):
                self.counters[res] = max(self.counters.get(res, 999), o["id"])
            o.setdefault("created_at", now_z())
            if res == "calls":
                for k, v in (("direction", "inbound"), ("answered", True), ("duration", 60),
                             ("start_time", now_offset()), ("voicemail", False), ("tags", []),
                             ("note", None), ("value", None), ("lead_status", None),
                             ("customer_name", None), ("spam", False)):
                    o.setdefault(k, v)
            elif res in ("companies", "trackers"):
                o.setdefault("status", "active")
                o.setdefault("disabled_at", None)
            elif res == "form_submissions":
                for k, v in (("tags", []), ("note", None), ("value", None), ("lead_status", None)):
                    o.setdefault(k, v)
            elif res == "sms-threads":
                o.setdefault("tags", [])
                o.setdefault("lead_status", None)
            store[str(o["id"])] = o
            out.append(o)
        if "count" in data:
            return json_resp(200, {"count": len(out)})
        return json_resp(200, out if many else out[0])

    @staticmethod
    def _seed_copies(data):
        """{"count": N, "object": {...}}: N copies of the object, each with a distinct
        customer_phone_number and customer_name ("<name> i") for calls; answers only the
        count, so seeding 20,000 calls is quick."""
        try:
            n = max(0, int(data.get("count")))
        except (TypeError, ValueError):
            return None
        tmpl = data.get("object") or {}
        if not isinstance(tmpl, dict):
            return None
        out = []
        for i in range(1, n + 1):
            o = dict(tmpl)
            if data.get("resource") == "calls":
                o.setdefault("customer_phone_number", "+1470555%04d" % (i % 10000))
                o["customer_name"] = "%s %d" % (tmpl.get("customer_name") or "Caller", i)
            out.append(o)
        return out


# ---------------------------------------------------------------------------------------------
# HTTP layer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-callrail/1"
    timeout = 300  # idle keep-alive connections are closed after this many seconds

    def log_message(self, format, *args):  # noqa: A002 - silence per-request stderr logging
        pass

    def handle_one_request(self):
        self.close_connection = True
        try:
            line = self.rfile.readline(65537)
            while line in (b"\r\n", b"\n"):
                line = self.rfile.readline(65537)
            if not line:
                return
            if len(line) > 65536:
                return self._simple(414, "URI Too Long")
            parts = line.decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                return self._simple(400, "Bad Request")
            method, target, version = parts
            method = method.upper()
            headers = {}
            count = 0
            while True:
                h = self.rfile.readline(65537)
                if not h:
                    return
                if h in (b"\r\n", b"\n"):
                    break
                count += 1
                if len(h) > 65536 or count > 200:
                    return self._simple(431, "Request Header Fields Too Large")
                name, sep, value = h.decode("utf-8", errors="replace").partition(":")
                if not sep:
                    return self._simple(400, "Bad Request")
                name = name.strip().lower()
                value = value.strip()
                headers[name] = headers[name] + ", " + value if name in headers else value
            tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
            if version == "HTTP/1.1":
                self.close_connection = "close" in tokens
            else:
                self.close_connection = "keep-alive" not in tokens
            if version == "HTTP/1.1" and headers.get("expect", "").lower() == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = self._read_body(headers)
            if body is None:
                return
            self._dispatch(method, target, headers, body)
        except (ConnectionError, TimeoutError, socket.timeout, OSError):
            self.close_connection = True

    def _read_body(self, headers):
        te = headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            chunks = []
            total = 0
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line:
                    return None
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._simple(400, "Bad chunk")
                    return None
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if not t or t in (b"\r\n", b"\n"):
                            break
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    self._simple(413, "Payload Too Large")
                    return None
                data = self.rfile.read(size)
                if len(data) < size:
                    return None
                chunks.append(data)
                self.rfile.readline(3)  # CRLF after the chunk
        cl = headers.get("content-length")
        if cl is None:
            return b""
        try:
            n = int(cl)
            if n < 0:
                raise ValueError
        except ValueError:
            self._simple(400, "Bad Content-Length")
            return None
        if n > MAX_BODY:
            self._simple(413, "Payload Too Large")
            return None
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            return None
        return data

    def _dispatch(self, method, target, headers, body):
        t_recv = time.time()
        app = self.server.app
        if target.startswith(("http://", "https://")):
            sp = urlsplit(target)
            path, query = sp.path or "/", sp.query
        else:
            path, _, query = target.partition("?")
        if path == "/__fake" or path.startswith("/__fake/"):
            r = app.control(method, path, query, body)
            self._send(r, method)
            return
        try:
            r = app.api(method, path, query, headers, body, t_recv)
        except Exception:  # a bug in the fake: say so loudly rather than hang the client
            import traceback
            traceback.print_exc()
            r = text_resp(500, "fake_callrail internal error (see its stderr)")
        if r.delay_ms:
            time.sleep(r.delay_ms / 1000.0)
        while r.hold_file and os.path.exists(r.hold_file):
            time.sleep(0.01)
        if r.drop:
            self._drop()
            return
        self._send(r, method)

    def _send(self, r, method="GET"):
        lines = ["HTTP/1.1 %d %s" % (r.status, REASONS.get(r.status, "Status"))]
        for k, v in r.headers:
            lines.append("%s: %s" % (k, v))
        lines.append("Content-Length: %d" % len(r.body))
        lines.append("Date: " + formatdate(usegmt=True))
        lines.append("Server: fake-callrail")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")
        self.wfile.write(head if method == "HEAD" else head + r.body)

    def _simple(self, status, text):
        self.close_connection = True
        self._send(text_resp(status, text))

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def server_bind(self):
        # No getfqdn(): it could do a DNS lookup.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    # Open connections, counted from accept() to the handler's end, under a
    # lock with the accept so that quiet() sees each connection either in
    # the listen queue or in the count (for /__fake/quiesce).
    open_connections = 0
    open_lock = threading.Lock()

    def quiet(self):
        with self.open_lock:
            waiting = select.select([self.socket], [], [], 0)[0]
            return not waiting and self.open_connections <= 1  # the quiesce call's own

    def shutdown_request(self, request):
        super().shutdown_request(request)
        with self.open_lock:
            self.open_connections -= 1

    def get_request(self):
        with self.open_lock:
            sock, addr = self.socket.accept()
            self.open_connections += 1
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return sock, addr

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def load_config(arg):
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if arg:
        if arg.startswith("@"):
            with open(arg[1:], encoding="utf-8") as f:
                arg = f.read()
        extra = json.loads(arg)
        if not isinstance(extra, dict):
            raise SystemExit("--config must be a JSON object")
        deep_merge(cfg, extra)
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake CallRail API v3 server (127.0.0.1 only)")
    ap.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    ap.add_argument("--port-file", help="write the port here (atomically) once listening")
    ap.add_argument("--log", help="append one JSON line per API request to this file")
    ap.add_argument("--config", help="initial configuration: JSON text or @FILE")
    ap.add_argument("--max-seconds", type=float, default=3600.0,
                    help="exit on its own after this many seconds (default 3600)")
    args = ap.parse_args(argv)

    app = App(load_config(args.config), args.log)
    server = Server(("127.0.0.1", args.port), Handler)
    server.app = app
    app.server = server
    port = server.server_address[1]
    stop = threading.Event()
    app.stop_event = stop
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    if args.port_file:
        tmp = "%s.tmp.%d" % (args.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    print("listening on 127.0.0.1:%d" % port, flush=True)
    stop.wait(args.max_seconds)
    server.shutdown()
    server.server_close()
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
