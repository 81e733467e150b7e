#!/usr/bin/env python3
"""`make bench`: throughput, latency, memory, CPU, pacing and durability of
callrail_send on loopback, against curl and wrk, and the speed and memory of
reading with callrail_get.  Prints a report and writes
it to bench/results.md (raw numbers: build/bench/results.json).

Everything runs on 127.0.0.1: nginx (a generated config in build/bench/),
a purpose-built 50 ms delay server (bench/delay_server.py) and the fake
CallRail server (tests/fake_callrail.py), all started and stopped here.

Environment:
  BENCH_RUNS=N        repetitions of every timed measurement (default 5)
  BENCH_QUICK=1       fewer records everywhere, for development
  BENCH_SECTIONS=...  comma list of sections to run (default 1,2,3,4,5,6,7,8)
  BENCH_PIN=0         do not pin the client to CPU 0 and the servers to CPU 1
  BENCH_FULL=1        the issue's record counts everywhere (20,000 at C = 1 too, 1,000 at
                      50 ms for every C, a 1,000,000-record send): about an hour
  BENCH_MEM_RECORDS   records of the big callrail_preview memory run (default 1000000)
  BENCH_MEM_SEND_RECORDS  records of the big callrail_send memory run (default 1000000)
  BENCH_AUDIT_ROWS=N  responses of the synthesized audit of section 7 (default 3650000,
                      365000 with BENCH_QUICK; the keys scale with it, 1,000,000 at 3.65 M)
  BENCH_PERF=0        skip the perf profile of a C=16 send
  BENCH_RESULTS=PATH  write the report there instead of bench/results.md
  BENCH_OUT=DIR       work directory (default build/bench; one run at a time per directory)
  BENCH_EXT=PATH      benchmark that build of callrail.so (default ./callrail.so), e.g. to
                      compare a change against the committed code
Standard library only.
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("BENCH_OUT") or ROOT / "build" / "bench").resolve()
RESULTS_MD = Path(os.environ.get("BENCH_RESULTS") or ROOT / "bench" / "results.md").resolve()
RESULTS_JSON = OUT / (RESULTS_MD.stem + ".json")
EXT_SRC = Path(os.environ.get("BENCH_EXT") or ROOT / "callrail.so").resolve()
EXT = OUT / "callrail.so"  # a snapshot: a rebuild during the run changes nothing
FAKE = ROOT / "tests" / "fake_callrail.py"
DELAY = ROOT / "bench" / "delay_server.py"


def env_int(name, default):
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


def env_flag(name, default):
    v = os.environ.get(name, "").strip()
    return default if v == "" else v not in ("0", "no", "false")


RUNS = max(1, env_int("BENCH_RUNS", 5))
QUICK = env_flag("BENCH_QUICK", False)
SECTIONS = {s.strip() for s in os.environ.get("BENCH_SECTIONS", "1,2,3,4,5,6,7,8").split(",") if s}
ONLY_READS = SECTIONS == {"7"}  # no nginx, wrk or valgrind needed
PIN = env_flag("BENCH_PIN", True) and (os.cpu_count() or 1) >= 2
DO_PERF = env_flag("BENCH_PERF", True)
CLIENT_CPU, SERVER_CPU = "0", "1"

CONCURRENCY = (1, 4, 16)
FULL = env_flag("BENCH_FULL", False)     # the issue's exact record counts (about an hour)
# Section 1 and 6: records per run.  C = 1 with durable intent makes one fsync per
# request, so it gets fewer records unless BENCH_FULL (its rate does not depend on N).
N_ZERO = 2000 if QUICK else 20000
N_ZERO_C1 = N_ZERO if FULL else (500 if QUICK else 2000)
# Section 2: records per run at each C; N x 50 ms / C must stay small for the time budget.
N_LAT = {1: 20, 4: 80, 16: 200} if QUICK else \
    ({1: 1000, 4: 1000, 16: 1000} if FULL else {1: 100, 4: 400, 16: 1000})
DELAY_MS = 50
# Section 3: peak RSS.  The big send runs once; at ~8,000 requests/s a million takes ~2 min.
N_MEM_SMALL = 10000
N_MEM_PREVIEW = env_int("BENCH_MEM_RECORDS", 100000 if QUICK else 1000000)
N_MEM_SEND = env_int("BENCH_MEM_SEND_RECORDS",
                     50000 if QUICK else 1000000)
N_CG_BIG = 10000 if QUICK else 100000      # callgrind: preview (with key)
N_CG_BIG_NOKEY = 10000 if QUICK else 20000
N_CG_SMALL = 1000
N_CG_SEND_BIG, N_CG_SEND_SMALL = (500, 100) if QUICK else (2000, 200)
QUOTA = 10 if QUICK else 20                # section 5: per second, fake and destination
WRK_SECONDS = 1 if QUICK else 2
# Section 7: the synthesized account-year (3.65 M requests, 1 M keys).
N_AUDIT = env_int("BENCH_AUDIT_ROWS", 365000 if QUICK else 3650000)


S6_CONCURRENCY = CONCURRENCY if FULL else (1, 16)


def n_zero(c):
    return N_ZERO_C1 if c == 1 else N_ZERO


ACCOUNT = "ACC0000000000000000000000000000001"
TOKEN = "test-token"  # the fake server's admin token; nginx and the delay server take any
USER_AGENT = None     # read from callrail_version() at start

# A CallRail-like company object: what POST companies.json answers.
COMPANY_JSON = ('{"id":"COM8154748ae6bd4e278a7cddd38a662f4f","name":"Bench Co",'
                '"time_zone":"America/New_York","created_at":"2024-01-01T00:00:00.000-05:00",'
                '"status":"active","lead_scoring_enabled":true,"swap_exclude_jquery":null,'
                '"swap_ppc_override":null,"swap_landing_override":null,'
                '"swap_cookie_duration":6,"callscore_enabled":false,'
                '"keyword_spotting_enabled":false,"form_capture":null}')

LOG = []  # lines of progress, also kept for the raw results


def say(msg):
    print(msg, flush=True)
    LOG.append(msg)


def die(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Processes


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what, timeout=10.0):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            die("%s exited at start (code %s)" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    die("%s did not listen on 127.0.0.1:%d" % (what, port))


def read_port_file(path, proc, what, timeout=10.0):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            die("%s exited at start (code %s)" % (what, proc.returncode))
        try:
            return int(Path(path).read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.05)
    die("%s wrote no port file" % what)


def pinned(cmd, cpu):
    return (["taskset", "-c", cpu] + cmd) if PIN else cmd


class Server:
    def __init__(self, name, proc, port):
        self.name, self.proc, self.port = name, proc, port
        self.base = "http://127.0.0.1:%d" % port

    what = ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"


def start_nginx():
    """nginx with two listeners: zero latency (return 201) and, when Debian's echo module
    is there (nginx-light depends on it), every answer after DELAY_MS (echo_sleep)."""
    d = OUT / "nginx"
    for sub in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    echo = os.path.exists(ECHO_MODULE)
    port2 = free_port() if echo else None
    delayed = """
  server {{
    listen 127.0.0.1:{port2} backlog=4096;
    default_type application/json;
    location / {{
      echo_status 201;
      echo_sleep {sec};
      echo '{body}';
    }}
  }}""".format(port2=port2, sec=DELAY_MS / 1000.0, body=COMPANY_JSON) if echo else ""
    conf = d / "nginx.conf"
    conf.write_text("""# generated by bench/run_bench.py: CallRail stand-ins on loopback
{load}
worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    default_type application/json;
    location / {{
      return 201 '{body}';
    }}
  }}{delayed}
}}
""".format(load="load_module %s;" % ECHO_MODULE if echo else "", d=d, port=port,
           body=COMPANY_JSON, delayed=delayed))
    proc = subprocess.Popen(pinned(["nginx", "-e", str(d / "error.log"), "-p", str(d), "-c",
                                    str(conf)], SERVER_CPU),
                            stdout=subprocess.DEVNULL, stderr=open(d / "stderr.log", "w"))
    wait_port(port, proc, "nginx")
    nginx = Server("nginx", proc, port)
    delay = None
    if echo:
        wait_port(port2, proc, "nginx (delayed listener)")
        delay = Server("delay", None, port2)
        delay.what = "nginx with `echo_sleep %g` (Debian's echo module)" % (DELAY_MS / 1000.0)
    return nginx, delay


def start_delay():
    pf = OUT / "delay.port"
    pf.unlink(missing_ok=True)
    proc = subprocess.Popen(pinned([sys.executable, str(DELAY), "--port", "0", "--port-file",
                                    str(pf), "--delay-ms", str(DELAY_MS), "--max-seconds",
                                    "3600"], SERVER_CPU),
                            stdout=subprocess.DEVNULL, stderr=open(OUT / "delay.stderr", "w"))
    port = read_port_file(pf, proc, "delay server")
    wait_port(port, proc, "delay server")
    srv = Server("delay", proc, port)
    srv.what = "`bench/delay_server.py` (asyncio, keep-alive)"
    return srv


def start_fake():
    pf = OUT / "fake.port"
    pf.unlink(missing_ok=True)
    cfg = {"quota": {"general": {"second": QUOTA, "minute": None, "hour": None, "day": None}}}
    proc = subprocess.Popen(pinned([sys.executable, str(FAKE), "--port", "0", "--port-file",
                                    str(pf), "--config", json.dumps(cfg), "--max-seconds",
                                    "3600"], SERVER_CPU),
                            stdout=subprocess.DEVNULL, stderr=open(OUT / "fake.stderr", "w"))
    port = read_port_file(pf, proc, "fake CallRail server")
    wait_port(port, proc, "fake CallRail server")
    return Server("fake", proc, port)


def http_json(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read().decode())


# ---------------------------------------------------------------------------------------------
# Measuring one command

TIME_FIELDS = {
    "User time (seconds)": "user",
    "System time (seconds)": "sys",
    "Maximum resident set size (kbytes)": "maxrss_kb",
    "Voluntary context switches": "vcsw",
    "Involuntary context switches": "ivcsw",
}


def measure(cmd, stdin_text=None, env=None, wal=None, pin=True):
    """Runs cmd under /usr/bin/time -v (pinned to the client CPU); returns wall
    seconds, user/sys seconds, peak RSS, outputs and, if wal is a path, the
    largest size that file reached (sampled every 20 ms)."""
    full = ["/usr/bin/time", "-v"] + (pinned(cmd, CLIENT_CPU) if pin else cmd)
    e = dict(os.environ)
    e["CALLRAIL_BENCH_KEY"] = TOKEN
    if env:
        e.update(env)
    peak = [0, 0]
    done = threading.Event()

    def sample():
        while not done.wait(0.02):
            for i, path in enumerate((wal, wal[:-4] + "-shm")):
                try:
                    peak[i] = max(peak[i], os.stat(path).st_size)
                except OSError:
                    pass

    th = None
    if wal:
        th = threading.Thread(target=sample, daemon=True)
        th.start()
    t0 = time.monotonic()
    p = subprocess.Popen(full, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=e)
    out, err = p.communicate(stdin_text)
    wall = time.monotonic() - t0
    done.set()
    if th:
        th.join()
    r = {"wall": wall, "rc": p.returncode, "out": out, "wal_peak": peak[0], "shm_peak": peak[1]}
    keep = []
    for line in err.splitlines():
        k, sep, v = line.strip().rpartition(": ")
        if sep and k in TIME_FIELDS:
            r[TIME_FIELDS[k]] = float(v)
        elif line.startswith("\t") and ": " in line:
            continue  # the rest of time -v's report
        else:
            keep.append(line)
    r["err"] = "\n".join(keep)
    r["cpu"] = r.get("user", 0.0) + r.get("sys", 0.0)
    m = re.findall(r"Run Time: real ([0-9.]+) user ([0-9.]+) sys ([0-9.]+)", out)
    if m:
        r["stmt"] = float(m[-1][0])
    return r


# ---------------------------------------------------------------------------------------------
# Databases


def sqlite_script(db, script, check=True):
    e = dict(os.environ)
    e["CALLRAIL_BENCH_KEY"] = TOKEN
    p = subprocess.run(["sqlite3", "-batch", str(db)], input=script, text=True,
                       capture_output=True, env=e)
    if check and (p.returncode != 0 or "error" in p.stderr.lower()):
        die("sqlite3 %s failed:\n%s%s" % (db, p.stdout, p.stderr))
    return p.stdout


def dest_sql(name, cred, conc, key=True, rate=None):
    rate = rate or "json_object('per_hour', 100000000, 'per_day', 100000000)"
    keypart = "'key', 'shop_id', 'exclude', json_array('shop_id')," if key else ""
    return ("SELECT callrail_destination('{n}', json_object('credential', '{c}',"
            " 'url', '/v3/a/{{account_id}}/companies.json',"
            " 'params', json_object('account_id', '{a}'), {k}"
            " 'concurrency', {cc}, 'rate_limit', {r}, 'progress', json('false')));\n"
            "SELECT callrail_activate('{n}');\n").format(n=name, c=cred, a=ACCOUNT, k=keypart,
                                                         cc=conc, r=rate)


def make_template(path, nrows, servers):
    """A database with shops(shop_id, name, time_zone), a credential per server
    and destinations <server>_c<C> (key shop_id), <server>_nokey_c16, fake_pace."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    s = [".load %s" % EXT.with_suffix(""),
         "CREATE TABLE shops(shop_id INTEGER PRIMARY KEY, name TEXT NOT NULL, time_zone TEXT);",
         "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
         " INSERT INTO shops SELECT i, 'Shop ' || i, 'America/New_York' FROM n;" % nrows]
    for srv in servers:
        s.append("SELECT callrail_credential('%s', 'env:CALLRAIL_BENCH_KEY', '%s');"
                 % (srv.name, srv.base))
        if srv.name == "fake":
            s.append(dest_sql("fake_pace", "fake", 4,
                              rate="json_object('per_second', %d, 'per_hour', 100000000,"
                                   " 'per_day', 100000000)" % QUOTA))
            continue
        for c in CONCURRENCY:
            s.append(dest_sql("%s_c%d" % (srv.name, c), srv.name, c))
        s.append(dest_sql("%s_nokey_c16" % srv.name, srv.name, 16, key=False))
    s.append("PRAGMA wal_checkpoint(TRUNCATE);")
    sqlite_script(path, "\n".join(s) + "\n")


def fresh_copy(template, name):
    dst = OUT / name
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    shutil.copyfile(template, dst)
    return dst


def send_script(dest, n, memory_from=None):
    s = []
    if memory_from:
        s.append(".restore %s" % memory_from)
    s += [".load %s" % EXT.with_suffix(""),
          # A key goes only to an api_base registered on this connection:
          # the template's credentials are ours, so confirm them all.
          ".output /dev/null",
          "SELECT callrail_credential(name, source, api_base) FROM callrail_credentials;",
          ".output stdout", ".timer on",
          # Aggregated as the rows stream by: a GROUP BY would add its sorter's
          # memory (about 1.3 MiB at 300,000 rows) to the extension's.
          "SELECT 'ok', sum(state = 'ok'), 'other', sum(state <> 'ok') FROM callrail_send('%s',"
          " 'SELECT shop_id, name, time_zone FROM shops LIMIT %d');" % (dest, n)]
    return "\n".join(s) + "\n"


def ours(template, dest, n, memory=False, env=None, prefix=None, wrap=None):
    """One callrail_send run on a fresh copy of template (or in memory)."""
    script = send_script(dest, n, memory_from=template if memory else None)
    if memory:
        cmd, wal = ["sqlite3", "-batch"], None
    else:
        db = fresh_copy(template, "run.db")
        cmd, wal = ["sqlite3", "-batch", str(db)], str(db) + "-wal"
    if wrap:
        cmd = wrap + cmd
    r = measure(cmd, script, env=env, wal=wal)
    r["ok"] = r["rc"] == 0 and ("ok|%d|other|0" % n) in r["out"].split()
    if not r["ok"]:
        say("  !! %s: rc=%s out=%r err=%r" % (dest, r["rc"], r["out"][-300:], r["err"][-300:]))
    return r


# ---------------------------------------------------------------------------------------------
# curl and wrk


def curl_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_curl_config(template, srv, n):
    """The very requests callrail_send makes (URL and body from callrail_preview),
    with the same headers, one `next`-separated block each."""
    out = sqlite_script(template, ".load %s\n.mode json\nSELECT url, body FROM callrail_preview("
                        "'%s_c16', 'SELECT shop_id, name, time_zone FROM shops LIMIT %d');\n"
                        % (EXT.with_suffix(""), srv.name, n))
    rows = json.loads(out)
    if len(rows) != n:
        die("preview gave %d requests, not %d" % (len(rows), n))
    path = OUT / ("curl-%s-%d.cfg" % (srv.name, n))
    common = ("header = %s\nheader = \"Accept: application/json\"\n"
              "header = \"Content-Type: application/json\"\nheader = \"Expect:\"\n"
              "user-agent = %s\noutput = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n"
              % (curl_quote('Authorization: Token token="%s"' % TOKEN), curl_quote(USER_AGENT)))
    with open(path, "w") as f:
        for i, row in enumerate(rows):
            if i:
                f.write("next\n")
            f.write("url = %s\ndata-binary = %s\n" % (curl_quote(row["url"]),
                                                      curl_quote(row["body"])))
            f.write(common)
    return path, rows[0]


def curl(cfg, n, conc=None, code="201"):
    cmd = ["curl", "--no-progress-meter"]
    if conc:
        cmd += ["--parallel", "--parallel-max", str(conc)]
    r = measure(cmd + ["-K", str(cfg)])
    codes = r["out"].split()
    r["ok"] = r["rc"] == 0 and len(codes) == n and all(c == code for c in codes)
    if not r["ok"]:
        say("  !! curl: rc=%s %d codes, first bad %r, err=%r"
            % (r["rc"], len(codes), next((c for c in codes if c != code), None), r["err"][-300:]))
    return r


def make_wrk_script(row):
    path = OUT / "wrk-post.lua"
    lua = ("wrk.method = \"POST\"\nwrk.body = %s\nwrk.headers[\"Content-Type\"] = "
           "\"application/json\"\nwrk.headers[\"Accept\"] = \"application/json\"\n"
           "wrk.headers[\"Authorization\"] = %s\nwrk.headers[\"User-Agent\"] = %s\n"
           % (json.dumps(row["body"]), json.dumps('Token token="%s"' % TOKEN),
              json.dumps(USER_AGENT)))
    path.write_text(lua)
    return path


def wrk(script, url, conc, seconds):
    r = measure(["wrk", "-t1", "-c%d" % conc, "-d%ds" % seconds, "-s", str(script), url])
    m = re.search(r"Requests/sec:\s+([0-9.]+)", r["out"])
    r["rps"] = float(m.group(1)) if m else 0.0
    r["ok"] = r["rc"] == 0 and m is not None and "Non-2xx" not in r["out"]
    if not r["ok"]:
        say("  !! wrk: %r %r" % (r["out"][-300:], r["err"][-300:]))
    return r


# ---------------------------------------------------------------------------------------------
# Statistics and formatting


def stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def fmt(st, spec="{:,.0f}", spread=True):
    if st is None:
        return "n/a"
    s = spec.format(st["median"])
    if spread and st["n"] > 1:
        s += " (" + spec.format(st["min"]) + "–" + spec.format(st["max"]) + ")"
    return s


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


RESULTS = {"meta": {}, "sections": {}}
REPORT = []
TARGETS = []


def report(text=""):
    REPORT.append(text)


def target(name, goal, got, met):
    TARGETS.append((name, goal, got, "met" if met else "**missed**"))


# ---------------------------------------------------------------------------------------------
# Section 1 (and the file-db half of 6): zero-latency throughput


def section1(nginx, tmpl_zero):
    say("\n== 1. zero-latency server (nginx), %d records (C = 1: %d), %d runs"
        % (N_ZERO, N_ZERO_C1, RUNS))
    cfgs = {}
    for n in sorted({n_zero(c) for c in CONCURRENCY}):
        cfgs[n], row0 = make_curl_config(tmpl_zero, nginx, n)
    lua = make_wrk_script(row0)
    url = row0["url"]
    data = {c: {"ours": [], "curl": [], "wrk": []} for c in CONCURRENCY}
    data["seq"] = []
    for rep in range(RUNS):
        for c in CONCURRENCY:
            n = n_zero(c)
            r = ours(tmpl_zero, "nginx_c%d" % c, n)
            data[c]["ours"].append(r)
            r2 = curl(cfgs[n], n, conc=c)
            data[c]["curl"].append(r2)
            r3 = wrk(lua, url, c, WRK_SECONDS)
            data[c]["wrk"].append(r3)
            say("  run %d C=%-2d ours %7.0f req/s (%.2fs, cpu %.2fs, wal %.0f MiB)  "
                "curl --parallel %7.0f req/s  wrk %7.0f req/s"
                % (rep + 1, c, n / r["wall"], r["wall"], r["cpu"], r["wal_peak"] / 2**20,
                   n / r2["wall"], r3["rps"]))
        r = curl(cfgs[N_ZERO_C1], N_ZERO_C1)
        data["seq"].append(r)
        say("  run %d curl sequential %7.0f req/s" % (rep + 1, N_ZERO_C1 / r["wall"]))

    def rps(rs, n):
        return stats([n / r["wall"] if r["ok"] else None for r in rs])

    seq = rps(data["seq"], N_ZERO_C1)
    rows = []
    res = {}
    for c in CONCURRENCY:
        n = n_zero(c)
        o, cu = rps(data[c]["ours"], n), rps(data[c]["curl"], n)
        w = stats([r["rps"] if r["ok"] else None for r in data[c]["wrk"]])
        ratio = stats([b["wall"] / a["wall"] for a, b in zip(data[c]["ours"], data[c]["curl"])
                       if a["ok"] and b["ok"]])
        rows.append([c, "{:,}".format(n), fmt(o), fmt(cu), fmt(ratio, "{:.2f}×"), fmt(w),
                     fmt(seq) if c == 1 else "",
                     "%.2f×" % (o["median"] / seq["median"]) if c == 1 and o and seq else "",
                     fmt(stats([r["wal_peak"] / 2**20 for r in data[c]["ours"]]), "{:.1f}")])
        res[c] = {"records": n, "ours_rps": o, "curl_parallel_rps": cu, "ratio": ratio,
                  "wrk_rps": w}
        if c == 16 and o and cu:
            target("C=16 zero latency vs curl --parallel", "≥ 1.0×",
                   "%.2f×" % (o["median"] / cu["median"]), o["median"] >= cu["median"])
    res["curl_sequential_rps"] = seq
    RESULTS["sections"]["1"] = res
    report("## 1. Zero-latency server: requests/s")
    report()
    report("nginx on 127.0.0.1 answers every POST with 201 and a company object (%d bytes). "
           "`callrail_send` with durable intent on a fresh file database (WAL, `synchronous` at "
           "its default), destination with `key` and `exclude` as in the README's *Create "
           "companies*; curl sends the same URLs and bodies (taken from `callrail_preview`) "
           "with the same headers from a config file; wrk sends one of those bodies for %d s. "
           "Time is the whole process (start to exit). C = 1 sends %s records (one fsync per "
           "request makes it the slowest; its rate does not depend on the count; `BENCH_FULL=1` "
           "sends %s). *WAL peak*: the largest size of the database's `-wal` file during the "
           "run. Median (min–max) of %d runs."
           % (len(COMPANY_JSON), WRK_SECONDS, "{:,}".format(N_ZERO_C1), "{:,}".format(N_ZERO),
              RUNS))
    report()
    report(table(["C", "records", "callrail_send req/s", "curl --parallel req/s", "ours ÷ curl",
                  "wrk req/s (ceiling)", "curl sequential req/s", "ours ÷ curl seq",
                  "WAL peak MiB"], rows))
    report()
    return data


# ---------------------------------------------------------------------------------------------
# Section 2: 50 ms latency


def section2(delay, tmpl_zero):
    RESULTS["meta"]["delay_server"] = delay.what
    say("\n== 2. %d ms latency server, %d runs" % (DELAY_MS, RUNS))
    cfgs = {}
    for c in CONCURRENCY:
        n = N_LAT[c]
        if n not in cfgs:
            cfgs[n] = make_curl_config(tmpl_zero, delay, n)[0]
    data = {c: {"ours": [], "curl": []} for c in CONCURRENCY}
    for rep in range(RUNS):
        for c in CONCURRENCY:
            n = N_LAT[c]
            r = ours(tmpl_zero, "delay_c%d" % c, n)
            r2 = curl(cfgs[n], n, conc=c)
            data[c]["ours"].append(r)
            data[c]["curl"].append(r2)
            ideal = n * DELAY_MS / 1000.0 / c
            say("  run %d C=%-2d n=%d ideal %.2fs  ours %.3fs (%.3f×)  curl --parallel %.3fs"
                % (rep + 1, c, n, ideal, r["wall"], r["wall"] / ideal, r2["wall"]))
    rows = []
    res = {}
    worst = 0.0
    for c in CONCURRENCY:
        n = N_LAT[c]
        ideal = n * DELAY_MS / 1000.0 / c
        o = stats([r["wall"] if r["ok"] else None for r in data[c]["ours"]])
        cu = stats([r["wall"] if r["ok"] else None for r in data[c]["curl"]])
        st = stats([r["stmt"] for r in data[c]["ours"] if r["ok"] and "stmt" in r])
        vs_ideal = stats([r["wall"] / ideal for r in data[c]["ours"] if r["ok"]])
        st_ideal = stats([r["stmt"] / ideal for r in data[c]["ours"] if r["ok"] and "stmt" in r])
        cu_ideal = stats([r["wall"] / ideal for r in data[c]["curl"] if r["ok"]])
        vs_curl = stats([a["wall"] / b["wall"] for a, b in zip(data[c]["ours"], data[c]["curl"])
                         if a["ok"] and b["ok"]])
        over = stats([(r["wall"] - ideal) / n * c * 1000 for r in data[c]["ours"] if r["ok"]])
        rows.append([c, n, "%.3f" % ideal, fmt(o, "{:.3f}"), fmt(vs_ideal, "{:.3f}×"),
                     fmt(st_ideal, "{:.3f}×"), fmt(cu, "{:.3f}"), fmt(cu_ideal, "{:.3f}×"),
                     fmt(vs_curl, "{:.3f}×"), fmt(over, "{:.2f}")])
        res[c] = {"records": n, "ideal_s": ideal, "ours_s": o, "ours_stmt_s": st,
                  "vs_ideal": vs_ideal, "stmt_vs_ideal": st_ideal, "curl_s": cu,
                  "curl_vs_ideal": cu_ideal, "vs_curl": vs_curl, "overhead_ms": over}
        if vs_ideal:
            worst = max(worst, vs_ideal["median"])
    target("50 ms latency, wall within 10 % of N×50 ms/C (worst C)", "≤ 1.10×",
           "%.3f×" % worst, 0 < worst <= 1.10)
    RESULTS["sections"]["2"] = res
    report("## 2. Internet latency: every response delayed %d ms" % DELAY_MS)
    report()
    report("%s answers every request after %d ms. "
           "Ideal = N × %d ms ÷ C. *Wall* is the whole process (sqlite3 start, `.load`, the "
           "statement, exit); *statement* is the shell's `.timer` for the `callrail_send` "
           "statement alone. *Overhead* is (wall − ideal) per request on one connection, in ms. "
           "Records per C are %s (N ÷ C sets the run time; `BENCH_FULL=1` sends 1,000 at every "
           "C). Median (min–max) of %d runs."
           % (delay.what, DELAY_MS, DELAY_MS,
              ", ".join("%d at C = %d" % (N_LAT[c], c) for c in CONCURRENCY), RUNS))
    report()
    report(table(["C", "records", "ideal s", "callrail_send s", "÷ ideal", "statement ÷ ideal",
                  "curl --parallel s", "curl ÷ ideal", "ours ÷ curl", "overhead ms/request"],
                 rows))
    report()


# ---------------------------------------------------------------------------------------------
# Section 3: memory


def preview_script(dest, n):
    return (".load %s\n.timer on\nSELECT count(*), sum(length(body)) FROM callrail_preview('%s',"
            " 'SELECT shop_id, name, time_zone FROM shops LIMIT %d');\n"
            % (EXT.with_suffix(""), dest, n))


def section3(tmpl_big):
    say("\n== 3. memory: peak RSS, preview %d and %d records, send %d and %d"
        % (N_MEM_SMALL, N_MEM_PREVIEW, N_MEM_SMALL, N_MEM_SEND))
    rows = []
    res = {}
    base = measure(["sqlite3", "-batch", str(tmpl_big)],
                   ".load %s\nSELECT callrail_version();\n" % EXT.with_suffix(""))
    res["baseline_kb"] = base.get("maxrss_kb")
    for kind, big in (("preview", N_MEM_PREVIEW), ("send", N_MEM_SEND)):
        for n in (N_MEM_SMALL, big):
            rss, walls, wal, shm, cpu = [], [], [], [], []
            for _ in range(1 if n == big else RUNS):
                if kind == "preview":
                    r = measure(["sqlite3", "-batch", str(tmpl_big)],
                                preview_script("nginx_c16", n))
                    r["ok"] = r["rc"] == 0 and r["out"].split("\n")[0].startswith("%d|" % n)
                else:
                    r = ours(tmpl_big, "nginx_c16", n)
                if not r["ok"]:
                    say("  !! %s %d failed: %r %r" % (kind, n, r["out"][-200:], r["err"][-200:]))
                    continue
                rss.append(r["maxrss_kb"] / 1024.0)
                walls.append(r["wall"])
                wal.append(r["wal_peak"] / 2**20)
                shm.append(r["shm_peak"] / 2**20)
                cpu.append(r["cpu"] / n * 1000)
                say("  %s %d: peak RSS %.1f MiB, %.1fs, WAL peak %.0f MiB, shm %.1f MiB"
                    % (kind, n, rss[-1], r["wall"], wal[-1], shm[-1]))
            s_rss = stats(rss)
            rows.append(["`callrail_%s`" % kind, "{:,}".format(n), fmt(s_rss, "{:.1f}"),
                         fmt(stats(walls), "{:.1f}"), fmt(stats(cpu), "{:.3f}"),
                         fmt(stats(wal), "{:,.0f}") if kind == "send" else "",
                         fmt(stats(shm), "{:.1f}") if kind == "send" else "", len(rss)])
            res["%s_%d" % (kind, n)] = {"rss_mib": s_rss, "wall_s": stats(walls),
                                         "wal_mib": stats(wal), "shm_mib": stats(shm),
                                         "cpu_s_per_1000": stats(cpu)}
    notes = []
    for kind, big in (("preview", N_MEM_PREVIEW), ("send", N_MEM_SEND)):
        b = res.get("%s_%d" % (kind, big), {})
        sm = res.get("%s_%d" % (kind, N_MEM_SMALL), {})
        if not b.get("rss_mib"):
            continue
        got = b["rss_mib"]["median"]
        desc = "%.1f MiB" % got
        if sm.get("rss_mib") and big > N_MEM_SMALL:
            slope = (got - sm["rss_mib"]["median"]) / (big - N_MEM_SMALL) * 100000
            res["%s_rss_growth_mib_per_100k" % kind] = slope
            notes.append("`callrail_%s`: peak RSS grew %+.2f MiB per 100,000 records from %s to "
                         "%s." % (kind, slope, "{:,}".format(N_MEM_SMALL), "{:,}".format(big)))
        if big < 1000000 and b.get("shm_mib") and sm.get("shm_mib"):
            # What keeps growing is the wal-index (-shm), mapped into the process, because
            # the WAL cannot be reset while the user's statement reads; page caches are capped.
            shm_slope = (b["shm_mib"]["median"] - sm["shm_mib"]["median"]) / (big - N_MEM_SMALL)
            est = got + shm_slope * (1000000 - big)
            res["%s_rss_1m_estimate" % kind] = est
            notes.append("`callrail_%s`: the `-shm` wal-index grows %.2f MiB per 100,000 "
                         "requests and stays mapped; at 1,000,000 records the peak is estimated "
                         "at %.1f MiB (measured %.1f at %s plus that growth; the page caches "
                         "are already full)." % (kind, shm_slope * 100000, est, got,
                                                 "{:,}".format(big)))
            desc = "%.1f MiB at %s, estimated %.1f at 1,000,000" % (got, "{:,}".format(big),
                                                                    est)
            got = est
        if sm.get("rss_mib"):
            desc += " (%.1f at %s)" % (sm["rss_mib"]["median"], "{:,}".format(N_MEM_SMALL))
        target("peak RSS, %s of 1,000,000 records" % kind, "< 32 MiB", desc, got < 32)
    RESULTS["sections"]["3"] = res
    report("## 3. Memory: peak RSS of the sqlite3 process")
    report()
    report("`/usr/bin/time -v` maximum resident set size. A database with %s shops; "
           "`callrail_preview` consumes every row (`sum(length(body))`); `callrail_send` goes to "
           "nginx at C = 16 with durable intent (fresh file database, run once at the big count; "
           "its rows are counted as they stream by, without a GROUP BY sorter). "
           "The sqlite3 shell with the extension loaded and nothing run peaks at %.1f MiB. "
           "*WAL* and *shm*: the largest size of the database's `-wal` and `-shm` files during "
           "the run (the `-shm` wal-index is mapped into the process, 32 KiB per 4,096 WAL "
           "frames)."
           % ("{:,}".format(max(N_MEM_PREVIEW, N_MEM_SEND)),
              (base.get("maxrss_kb") or 0) / 1024.0))
    report()
    report(table(["function", "records", "peak RSS MiB", "wall s", "CPU s/1000",
                  "WAL peak MiB", "shm peak MiB", "runs"], rows))
    report()
    for n in notes:
        report("- " + n)
    if notes:
        report()


# ---------------------------------------------------------------------------------------------
# Section 4: CPU per request, instructions per record


def callgrind(db, script, name):
    return callgrind_cmd(["sqlite3", "-batch", str(db)], name, script)


def callgrind_cmd(cmd, name, stdin_text=None):
    outf = OUT / ("callgrind.%s.out" % name)
    outf.unlink(missing_ok=True)
    r = measure(["valgrind", "--tool=callgrind", "--callgrind-out-file=%s" % outf] + cmd,
                stdin_text)
    if r["rc"] != 0:
        say("  !! callgrind %s failed: %s" % (name, r["err"][-400:]))
        return None, outf
    total = None
    for line in outf.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            total = int(line.split()[1])
    return total, outf


def annotate(outf, inclusive):
    p = subprocess.run(["callgrind_annotate", "--auto=no",
                        "--inclusive=%s" % ("yes" if inclusive else "no"),
                        "--threshold=100", str(outf)], capture_output=True, text=True)
    rows = []
    for line in p.stdout.splitlines():
        m = re.match(r"\s*([0-9,]+)\s+(?:\([ 0-9.]+%\)\s+)?(\S.*?)(?:\s+\[(.*)\])?\s*$", line)
        if not m or ":" not in m.group(2):
            continue
        rows.append((int(m.group(1).replace(",", "")), m.group(2), m.group(3) or ""))
    return rows


def is_ours(fn):
    """callrail.so's functions are all named cr_* or cfg_* (callgrind_annotate does not
    print the object on every line)."""
    name = fn.split(":")[-1]
    return name.startswith(("cr_", "cfg_", "sqlite3_callrail_init"))


def by_object(outf):
    agg = {}
    for ir, fn, obj in annotate(outf, inclusive=False):
        key = "callrail.so" if is_ours(fn) else (os.path.basename(obj) or "?")
        key = re.sub(r"\.so[.0-9]*$", ".so", key)
        agg[key] = agg.get(key, 0) + ir
    return agg


def inclusive_ours(outf, names=None):
    """Inclusive instructions of each of our functions (or of the named ones)."""
    agg = {}
    for ir, fn, _obj in annotate(outf, inclusive=True):
        name = re.sub(r"'\d+$", "", fn.split(":")[-1])
        if (names is None and is_ours(name)) or (names and name in names):
            agg[name] = max(agg.get(name, 0), ir)
    return agg


# Library functions worth watching in a send, inclusive.
WATCH = ("sqlite3WalCheckpoint", "sqlite3PagerCheckpoint", "curl_multi_perform",
         "curl_easy_init", "curl_easy_cleanup", "curl_url_set", "curl_multi_add_handle",
         "curl_easy_setopt", "sqlite3_prepare_v2", "sqlite3_prepare_v3")


def section4(nginx, tmpl_zero, tmpl_big, s1):
    say("\n== 4. CPU per request and instructions per record")
    res = {}
    rows = []
    for c in CONCURRENCY:
        n = n_zero(c)
        o = stats([r["cpu"] / n * 1000 for r in s1[c]["ours"] if r["ok"]])
        cu = stats([r["cpu"] / n * 1000 for r in s1[c]["curl"] if r["ok"]])
        w = stats([r["cpu"] / (r["rps"] * WRK_SECONDS) * 1000 for r in s1[c]["wrk"]
                   if r["ok"] and r["rps"] > 0])
        rows.append(["C = %d" % c, "{:,}".format(n), fmt(o, "{:.3f}"), fmt(cu, "{:.3f}"),
                     "%.2f×" % (o["median"] / cu["median"]) if o and cu else "n/a",
                     fmt(w, "{:.3f}")])
        res["cpu_per_1000_c%d" % c] = {"ours": o, "curl": cu, "wrk": w}
    seq = stats([r["cpu"] / N_ZERO_C1 * 1000 for r in s1["seq"] if r["ok"]])
    rows.append(["curl sequential", "{:,}".format(N_ZERO_C1), "", fmt(seq, "{:.3f}"), "", ""])
    res["cpu_per_1000_curl_seq"] = seq
    report("## 4. CPU per request")
    report()
    report("User + system CPU seconds per 1,000 requests, whole process, from the section 1 "
           "runs (median (min–max) of %d runs). Includes process start-up, `.load` and, for "
           "curl, parsing its config file." % RUNS)
    report()
    report(table(["", "records", "callrail_send s/1000", "curl s/1000", "ours ÷ curl",
                  "wrk s/1000"], rows))
    report()

    # Instructions: callgrind, counted, not timed: the same for the same binaries and inputs.
    cg_rows = []
    for dest, label, nbig in (("nginx_c16", "with `key` + `exclude` (section 1's destination)",
                               N_CG_BIG),
                              ("nginx_nokey_c16", "no `key`, no `exclude`", N_CG_BIG_NOKEY)):
        tb, outb = callgrind(tmpl_big, preview_script(dest, nbig), "preview-%s-big" % dest)
        ts, _ = callgrind(tmpl_big, preview_script(dest, N_CG_SMALL), "preview-%s-small" % dest)
        per = (tb - ts) / (nbig - N_CG_SMALL) if tb and ts else None
        say("  callgrind preview %s: %s instructions/record" % (dest, per and round(per)))
        cg_rows.append(["`callrail_preview`, %s" % label, "{:,}".format(nbig),
                        "{:,.0f}".format(per) if per else "n/a"])
        res["ir_per_record_preview_%s" % dest] = per
    db = fresh_copy(tmpl_zero, "cg-big.db")
    tb, outb = callgrind(db, send_script("nginx_c16", N_CG_SEND_BIG), "send-big")
    db = fresh_copy(tmpl_zero, "cg-small.db")
    ts, outs = callgrind(db, send_script("nginx_c16", N_CG_SEND_SMALL), "send-small")
    dn = N_CG_SEND_BIG - N_CG_SEND_SMALL
    per = (tb - ts) / dn if tb and ts else None
    say("  callgrind send: %s instructions/request" % (per and round(per)))
    cg_rows.append(["`callrail_send` to nginx, C = 16: the whole process per request (ours, "
                    "SQLite, libcurl, libc)", "{:,}".format(N_CG_SEND_BIG),
                    "{:,.0f}".format(per) if per else "n/a"])
    res["ir_per_request_send"] = per
    # The same requests from curl --parallel, for scale.
    cb, _ = callgrind_cmd(["curl", "--no-progress-meter", "--parallel", "--parallel-max", "16",
                           "-K", str(make_curl_config(tmpl_zero, nginx, N_CG_SEND_BIG)[0])],
                          "curl-big")
    cs, _ = callgrind_cmd(["curl", "--no-progress-meter", "--parallel", "--parallel-max", "16",
                           "-K", str(make_curl_config(tmpl_zero, nginx, N_CG_SEND_SMALL)[0])],
                          "curl-small")
    cper = (cb - cs) / dn if cb and cs else None
    say("  callgrind curl --parallel: %s instructions/request" % (cper and round(cper)))
    cg_rows.append(["`curl --parallel --parallel-max 16`, the same requests (config file "
                    "parsing included)", "{:,}".format(N_CG_SEND_BIG),
                    "{:,.0f}".format(cper) if cper else "n/a"])
    res["ir_per_request_curl"] = cper
    report("### Instructions (callgrind: counted, not timed)")
    report()
    report("The difference between two runs (the records shown and %s for the preview, %s and "
           "%s for the send) divided by the difference in records, so start-up drops out. These "
           "numbers do not move with machine load; a regression shows here first."
           % ("{:,}".format(N_CG_SMALL),
              "{:,}".format(N_CG_SEND_BIG), "{:,}".format(N_CG_SEND_SMALL)))
    report()
    report(table(["what", "records", "instructions per record"], cg_rows))
    report()
    if tb and ts:
        ob, osm = by_object(outb), by_object(outs)
        keys = sorted(set(ob) | set(osm), key=lambda k: -(ob.get(k, 0) - osm.get(k, 0)))
        orows = []
        for k in keys:
            d = (ob.get(k, 0) - osm.get(k, 0)) / dn
            if abs(d) >= 50:
                orows.append([k, "{:,.0f}".format(d), "%.1f%%" % (100.0 * d / per)])
        res["send_objects_per_request"] = {r[0]: r[1] for r in orows}
        report("Where the instructions of one `callrail_send` request go (self cost by object):")
        report()
        report(table(["object", "instructions/request", "share"], orows))
        report()
        ib, ism = inclusive_ours(outb), inclusive_ours(outs)
        diff = sorted(((ib[f] - ism.get(f, 0)) / dn, f) for f in ib)
        top = [["`%s`" % f, "{:,.0f}".format(d), "%.1f%%" % (100.0 * d / per)]
               for d, f in reversed(diff) if 500 <= d < 0.95 * per][:20]
        res["send_ours_inclusive_per_request"] = top
        report("Our functions by inclusive instructions per request (callees included, so "
               "nested rows overlap; the outer loop, which holds everything, is left out):")
        report()
        report(table(["function (callrail.so)", "instructions/request", "of the request"],
                     top))
        report()
        wb, ws = inclusive_ours(outb, WATCH), inclusive_ours(outs, WATCH)
        wrows = [["`%s`" % f, "{:,.0f}".format((wb[f] - ws.get(f, 0)) / dn),
                  "%.1f%%" % (100.0 * (wb[f] - ws.get(f, 0)) / dn / per)]
                 for f in sorted(wb, key=lambda f: -(wb[f] - ws.get(f, 0)))
                 if (wb[f] - ws.get(f, 0)) / dn >= 100]
        res["send_watch_inclusive_per_request"] = wrows
        if wrows:
            report("Library calls worth watching, inclusive per request (a WAL auto-checkpoint "
                   "that cannot progress while the user's statement reads costs more the longer "
                   "the run):")
            report()
            report(table(["function", "instructions/request", "of the request"], wrows))
            report()
    RESULTS["sections"]["4"] = res


# ---------------------------------------------------------------------------------------------
# Section 5: quota pacing


def section5(fake, tmpl_zero):
    n = 3 * QUOTA
    say("\n== 5. quota pacing: %d/s at the fake server and in the destination, %d records"
        % (QUOTA, n))
    spans, optima, ratios, lags, n429, stmts = [], [], [], [], [], []
    for rep in range(RUNS):
        http_json("POST", fake.base + "/__fake/reset", {})
        r = ours(tmpl_zero, "fake_pace", n)
        log = [e for e in http_json("GET", fake.base + "/__fake/log")
               if e["path"].endswith("/companies.json")]
        c429 = sum(1 for e in log if e["status"] == 429)
        t = [e["time"] for e in log if e["status"] == 201]
        if len(t) != n or not r["ok"]:
            say("  !! pacing run %d: %d created of %d, %d×429, out %r" % (rep + 1, len(t), n, c429,
                                                                        r["out"][-200:]))
            continue
        # Request i + Q may arrive 1 s after request i at the earliest; the first Q go at
        # once, as fast as client and server allow.  So the optimum span from the first
        # arrival to the last is (N/Q - 1) s plus the first wave's own burst.
        burst = t[QUOTA - 1] - t[0]
        optimum = (n // QUOTA - 1) * 1.0 + burst
        span = t[-1] - t[0]
        lag = statistics.median([(t[i] - t[i - QUOTA] - 1.0) * 1000 for i in range(QUOTA, n)])
        spans.append(span)
        optima.append(optimum)
        ratios.append(span / optimum)
        lags.append(lag)
        stmts.append(r.get("stmt"))
        n429.append(c429)
        say("  run %d: first→last %.3fs, optimum %.3fs (first wave %.0f ms): %.3f×; request "
            "i+%d came %.1f ms later than 1 s after i (median); %d×429"
            % (rep + 1, span, optimum, burst * 1000, span / optimum, QUOTA, lag, c429))
    ratio = stats(ratios)
    res = {"quota_per_s": QUOTA, "records": n, "span_s": stats(spans), "optimum_s": stats(optima),
           "ratio": ratio, "lag_ms": stats(lags), "stmt_s": stats(stmts), "http_429": n429}
    RESULTS["sections"]["5"] = res
    target("pacing: first→last request vs optimum, 429s", "≤ 1.02×, 0",
           "%.3f×, %d" % (ratio["median"] if ratio else 0, sum(n429)),
           bool(ratio) and ratio["median"] <= 1.02 and sum(n429) == 0)
    report("## 5. Quota pacing")
    report()
    report("The fake CallRail server enforces %d requests per sliding second for the account "
           "(answering 429 beyond it); the destination's `rate_limit` says `per_second: %d`; "
           "concurrency 4; %d records = 3 × the quota. Request i + %d may arrive no sooner than "
           "1 s after request i, and the first %d go at once, so the optimum from the first "
           "arrival to the last (as the server logs them) is %d s plus the first wave's own "
           "burst, measured in the same run. *Lag* is how much later than that 1 s request "
           "i + %d arrived (median over i): what the pacer gives away per wave. *Statement* is "
           "the `callrail_send` statement's own time. Median (min–max) of %d runs."
           % (QUOTA, QUOTA, n, QUOTA, QUOTA, n // QUOTA - 1, QUOTA, RUNS))
    report()
    report(table(["first→last request s", "optimum s", "÷ optimum", "lag ms per wave",
                  "statement s", "HTTP 429s"],
                 [[fmt(stats(spans), "{:.3f}"), fmt(stats(optima), "{:.3f}"),
                   fmt(ratio, "{:.3f}×"), fmt(stats(lags), "{:.1f}"),
                   fmt(stats(stmts), "{:.3f}"), fmt(stats(n429), "{:.0f}")]]))
    report()


# ---------------------------------------------------------------------------------------------
# Section 7: reading with callrail_get


N_READ = 20000          # calls seeded in the fake and read back
N_READ_SMALL = 1000     # the same read stopped early: memory must not depend on the count
READ_PER_PAGE = 250


def read_script(fake, n):
    """A fresh database: the credential, then callrail_get over n calls (LIMIT n stops the
    read after the page holding the n-th call)."""
    return "\n".join([
        ".load %s" % EXT.with_suffix(""), ".timer on",
        "SELECT callrail_credential('bench', 'env:CALLRAIL_BENCH_KEY', '%s');" % fake.base,
        "SELECT 'items', count(*), 'bytes', sum(length(item)) FROM (SELECT item FROM"
        " callrail_get('bench', '/v3/a/%s/calls.json') LIMIT %d);" % (ACCOUNT, n)]) + "\n"


def read_ours(fake, n):
    db = OUT / "read.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    r = measure(["sqlite3", "-batch", str(db)], read_script(fake, n))
    r["ok"] = r["rc"] == 0 and ("items|%d|" % n) in r["out"]
    if not r["ok"]:
        say("  !! callrail_get %d: rc=%s out=%r err=%r" % (n, r["rc"], r["out"][-300:],
                                                          r["err"][-300:]))
    return r


def read_curl_config(fake, n):
    """The same pages, fetched one after another by one curl (keep-alive), same headers."""
    path = OUT / ("curl-read-%d.cfg" % n)
    pages = (n + READ_PER_PAGE - 1) // READ_PER_PAGE
    with open(path, "w") as f:
        for i in range(1, pages + 1):
            if i > 1:
                f.write("next\n")
            f.write("url = %s\n" % curl_quote("%s/v3/a/%s/calls.json?per_page=%d%s" % (
                fake.base, ACCOUNT, READ_PER_PAGE, "&page=%d" % i if i > 1 else "")))
            f.write("header = %s\nheader = \"Accept: application/json\"\nuser-agent = %s\n"
                    "output = \"/dev/null\"\nwrite-out = \"%%{http_code}\\n\"\n"
                    % (curl_quote('Authorization: Token token="%s"' % TOKEN),
                       curl_quote(USER_AGENT)))
    return path, pages


def section7(fake):
    say("\n== 7. read %s calls: callrail_get vs curl fetching the same pages" % f"{N_READ:,}")
    http_json("POST", fake.base + "/__fake/reset", {})
    http_json("POST", fake.base + "/__fake/config",
              {"quota": {"general": {"second": None, "minute": None, "hour": None, "day": None}}})
    http_json("POST", fake.base + "/__fake/seed", {"resource": "calls", "count": N_READ,
                                                    "object": {"company_id": "COM1"}})
    cfg, pages = read_curl_config(fake, N_READ)
    big, small, cu = [], [], []
    for rep in range(RUNS):
        for n, runs in ((N_READ, big), (N_READ_SMALL, small)):
            r = read_ours(fake, n)
            if r["ok"]:
                runs.append(r)
        r = curl(cfg, pages, code="200")
        if r["ok"]:
            cu.append(r)
        say("  run %d: ours %.2fs, %.0f MiB at %d, %.0f MiB at %d; curl %.2fs, %.0f MiB"
            % (rep + 1, big[-1]["stmt"] if big else 0, big[-1]["maxrss_kb"] / 1024 if big else 0,
               N_READ, small[-1]["maxrss_kb"] / 1024 if small else 0, N_READ_SMALL,
               cu[-1]["wall"] if cu else 0, cu[-1]["maxrss_kb"] / 1024 if cu else 0))
    http_json("POST", fake.base + "/__fake/config",
              {"quota": {"general": {"second": QUOTA}}})
    http_json("POST", fake.base + "/__fake/reset", {})
    rate_ours = stats([N_READ / r["stmt"] for r in big])
    rate_curl = stats([N_READ / r["wall"] for r in cu])
    rss_big = stats([r["maxrss_kb"] / 1024 for r in big])
    rss_small = stats([r["maxrss_kb"] / 1024 for r in small])
    rss_curl = stats([r["maxrss_kb"] / 1024 for r in cu])
    res = {"items": N_READ, "pages": pages, "items_per_s_ours": rate_ours,
           "items_per_s_curl": rate_curl, "rss_mib_ours": rss_big,
           "rss_mib_ours_small": rss_small, "rss_mib_curl": rss_curl}
    RESULTS["sections"]["7"] = res
    flat = bool(rss_big and rss_small) and rss_big["median"] <= rss_small["median"] * 1.1 + 1
    target("read: peak RSS at %s items vs %s" % (f"{N_READ:,}", f"{N_READ_SMALL:,}"),
           "flat (≤ 1.1× + 1 MiB)",
           "%s vs %s MiB" % (fmt(rss_big, "{:.1f}", False), fmt(rss_small, "{:.1f}", False)),
           flat)
    report("## 7. Read %s calls" % f"{N_READ:,}")
    report()
    report("`callrail_get` over %s calls seeded in the fake CallRail server (%d pages of %d; its "
           "quota off), in a fresh WAL database, so every GET also writes its audit row; "
           "*items/s* from the statement's own time. `curl` fetches the same %d page URLs one "
           "after another in one process (keep-alive), with the same headers, into /dev/null. "
           "The same read stopped after %s items (a `LIMIT`) shows that memory does not grow "
           "with the number of items. Peak RSS from `/usr/bin/time -v`. Median (min–max) of "
           "%d runs." % (f"{N_READ:,}", pages, READ_PER_PAGE, pages, f"{N_READ_SMALL:,}", RUNS))
    report()
    report(table(["reader", "items/s", "peak RSS MiB (%s items)" % f"{N_READ:,}",
                  "peak RSS MiB (%s items)" % f"{N_READ_SMALL:,}"],
                 [["`callrail_get`", fmt(rate_ours), fmt(rss_big, "{:.1f}"),
                   fmt(rss_small, "{:.1f}")],
                  ["`curl` (sequential)", fmt(rate_curl), fmt(rss_curl, "{:.1f}"), "–"]]))
    report()


# Section 8: the audit at scale (bench/audit_scale.py)


def section8(fake):
    sys.path.insert(0, str(ROOT / "bench"))
    import audit_scale
    keys = max(1000, N_AUDIT * 1000000 // 3650000)
    say("\n== 8. audit at scale: %d responses, %d keys" % (N_AUDIT, keys))
    http_json("POST", fake.base + "/__fake/config",
              {"quota": {"general": {"second": None, "minute": None, "hour": None, "day": None}}})
    r = audit_scale.run_section(str(OUT / "audit"), str(EXT.with_suffix("")), fake.base, N_AUDIT,
                                keys, min(RUNS, 3), say)
    r["runs"] = min(RUNS, 3)
    RESULTS["sections"]["8"] = r
    b = r["before"]
    target("start of a 10-record keyed send, account-year vs empty, warm", "≤ 2×",
           "%.0f vs %.0f ms" % (b["start_warm_year"], b["start_warm_empty"]),
           b["start_warm_year"] <= 2 * b["start_warm_empty"])
    target("start of a 10-record keyed send, account-year, cold", "< 150 ms",
           "%.0f ms" % b["start_cold_year"], b["start_cold_year"] < 150)
    for line in audit_scale.report_lines(r):
        report(line)


# ---------------------------------------------------------------------------------------------
# Section 6: durability overhead


def count_fsyncs(tmpl, dest, n):
    """fsync/fdatasync calls of one run (strace with a seccomp filter: only those stop)."""
    if not shutil.which("strace"):
        return None
    outf = OUT / "strace-fsync.txt"
    r = ours(tmpl, dest, n, wrap=["strace", "-f", "--seccomp-bpf", "-e",
                                  "trace=fsync,fdatasync", "-c", "-o", str(outf)])
    if not r["ok"]:
        return None
    total = 0
    for line in outf.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in ("fsync", "fdatasync"):
            total += int(parts[3])
    return total


def fsync_probe(count=200):
    """Median and 90th percentile ms of a 4 KiB append + fdatasync in build/bench/."""
    path = OUT / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    ts = []
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            t = time.perf_counter()
            os.fdatasync(fd)
            ts.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    ts.sort()
    return {"median_ms": statistics.median(ts), "p10_ms": ts[count // 10],
            "p90_ms": ts[count * 9 // 10]}


def section6(tmpl_zero, s1):
    say("\n== 6. durability overhead")
    eat = shutil.which("eatmydata")
    data = {c: {"memory": [], "nosync": []} for c in S6_CONCURRENCY}
    for rep in range(RUNS):
        for c in S6_CONCURRENCY:
            n = n_zero(c)
            r = ours(tmpl_zero, "nginx_c%d" % c, n, memory=True)
            data[c]["memory"].append(r)
            msg = "  run %d C=%-2d n=%d :memory: %.3fs" % (rep + 1, c, n, r.get("stmt", 0))
            if eat:
                r2 = ours(tmpl_zero, "nginx_c%d" % c, n, wrap=[eat])
                data[c]["nosync"].append(r2)
                msg += "  file without fsync (eatmydata) %.3fs" % r2.get("stmt", 0)
            say(msg)
    probe = fsync_probe()
    RESULTS["meta"]["fsync_probe"] = probe
    say("  fdatasync of 4 KiB in build/bench: median %.2f ms (p10 %.2f, p90 %.2f)"
        % (probe["median_ms"], probe["p10_ms"], probe["p90_ms"]))
    rows = []
    res = {"fsync_probe": probe}
    for c in S6_CONCURRENCY:
        n = n_zero(c)
        fs = count_fsyncs(tmpl_zero, "nginx_c%d" % c, n)
        say("  C=%d: %s fsync calls for %d requests" % (c, fs, n))

        def st(rs):
            return stats([r["stmt"] for r in rs if r["ok"] and "stmt" in r])

        f, m, e = st(s1[c]["ours"]), st(data[c]["memory"]), st(data[c]["nosync"])
        for label, sv, rs in (("file, durable intent (default)", f, s1[c]["ours"]),
                              ("file, fsync made a no-op by eatmydata (diagnostic)", e,
                               data[c]["nosync"]),
                              ("`:memory:`: no second connection, no fsync", m,
                               data[c]["memory"])):
            if sv is None:
                continue
            first = label.startswith("file, d")
            # What one fsync costs inside the run: the time eatmydata saves, per fsync.
            per_fsync = ((f["median"] - e["median"]) * 1000 / fs) if fs and f and e else None
            rows.append([c, "{:,}".format(n), label, fmt(sv, "{:.2f}"),
                         "{:,.0f}".format(n / sv["median"]),
                         "%.2f×" % (f["median"] / sv["median"]) if f else "",
                         fmt(stats([r["cpu"] / n * 1000 for r in rs if r["ok"]]), "{:.3f}"),
                         "{:.3f}".format(fs / n) if fs and first else "",
                         "%.2f" % per_fsync if per_fsync is not None and first else ""])
        res[c] = {"records": n, "file_s": f, "nosync_s": e, "memory_s": m, "fsyncs": fs,
                  "ms_per_fsync": ((f["median"] - e["median"]) * 1000 / fs)
                  if fs and f and e else None}
    RESULTS["sections"]["6"] = res
    report("## 6. Durability overhead, to nginx")
    report()
    report("There is no switch to turn durable intent off. *file* is section 1's run (a fresh "
           "WAL database; the extension's own connection commits each group of `pending` rows, "
           "with an fsync, before the requests leave). *eatmydata* runs the same file-database "
           "send with fsync made a no-op by LD_PRELOAD: what the commits cost without the disk "
           "flush, i.e. about what `synchronous=NORMAL` on the audit connection would give (it "
           "is not a setting of the extension). *`:memory:`* has no file: the audit rows go "
           "through the user's own connection and commit when the statement ends, without "
           "fsync. Time is the `callrail_send` statement alone (`.timer`); CPU is the whole "
           "process. fsyncs are counted with `strace -f --seccomp-bpf` in one extra run; *ms per "
           "fsync* = (file − eatmydata) ÷ fsyncs: what each flush of the growing WAL costs the "
           "run (a bare 4 KiB append + fdatasync on this disk, measured now: %.2f ms, p10 %.2f, "
           "p90 %.2f). Median (min–max) of %d runs."
           % (probe["median_ms"], probe["p10_ms"], probe["p90_ms"], RUNS))
    report()
    report(table(["C", "records", "database", "statement s", "requests/s", "file ÷ this",
                  "CPU s/1000", "fsyncs/request", "ms per fsync"], rows))
    report()


# ---------------------------------------------------------------------------------------------
# Profile


def perf_profile(tmpl_zero):
    if not DO_PERF or not shutil.which("perf"):
        return
    say("\n== profile: perf record of a C=16 send of %d records" % N_ZERO)
    data = OUT / "perf.data"
    r = ours(tmpl_zero, "nginx_c16", N_ZERO,
             wrap=["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g", "-o", str(data),
                   "--"])
    if not r["ok"]:
        return
    p = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso",
                        "--stdio"], capture_output=True, text=True)
    (OUT / "perf-dso.txt").write_text(p.stdout)
    p2 = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort",
                         "dso,sym", "--stdio", "-g", "none"], capture_output=True, text=True)
    (OUT / "perf-sym.txt").write_text(p2.stdout)
    rows = []
    for line in p.stdout.splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s*$", line)
        if m and float(m.group(1)) >= 0.5:
            rows.append([m.group(2), m.group(1) + "%"])
    syms = []
    for line in p2.stdout.splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*\S)\s*$", line)
        if m and len(syms) < 20:
            syms.append([m.group(2), "`%s`" % m.group(3), m.group(1) + "%"])
    RESULTS["perf"] = {"dso": rows, "sym": syms}
    report("## Profile: where a C = 16 send spends its CPU (perf, cpu-clock samples)")
    report()
    report("One extra run of section 1 at C = 16 under `perf record -g` (files in `build/bench/`"
           ": `perf.data`, `perf-dso.txt`, `perf-sym.txt`). Share of on-CPU samples; time "
           "spent waiting (fsync, poll) is not on CPU and does not appear.")
    report()
    report(table(["object", "share"], rows))
    report()
    report(table(["object", "symbol", "share"], syms))
    report()


# ---------------------------------------------------------------------------------------------


def rel(path):
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def main():
    global USER_AGENT
    OUT.mkdir(parents=True, exist_ok=True)
    # Section 7 alone reads from the fake server: curl and sqlite3 are all it needs.
    tools = ("curl", "sqlite3") if ONLY_READS else (
        "nginx", "wrk", "curl", "sqlite3", "taskset", "valgrind", "callgrind_annotate")
    for tool in tools:
        if not shutil.which(tool):
            die("%s not found: run `make bench-deps` (as root it installs Debian's packages)"
                % tool)
    if not Path("/usr/bin/time").exists():
        die("/usr/bin/time not found: apt-get install time")
    if not EXT_SRC.exists():
        die("%s not built: run make" % EXT_SRC)
    shutil.copyfile(EXT_SRC, EXT)
    ver = sqlite_script(":memory:", ".load %s\nSELECT callrail_version();\n"
                        % EXT.with_suffix("")).strip()
    USER_AGENT = "callrail-sqlite/" + ver.split()[1]
    t_start = time.monotonic()
    load0 = os.getloadavg()
    probe0 = fsync_probe()
    RESULTS["meta"] = {"version": ver, "extension": str(EXT_SRC), "runs": RUNS, "quick": QUICK, "full": FULL,
                       "pinned": PIN, "cpus": os.cpu_count(), "load_start": load0,
                       "fsync_probe_start": probe0,
                       "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    say("bench: %s; %d runs%s%s; client on CPU %s, servers on CPU %s; fdatasync %.2f ms"
        % (ver, RUNS, ", QUICK" if QUICK else "", ", FULL" if FULL else "",
           CLIENT_CPU if PIN else "any", SERVER_CPU if PIN else "any", probe0["median_ms"]))
    servers = []
    try:
        if ONLY_READS:
            fake = start_fake()
            servers.append(fake)
            timed("7", section7, fake)
            return finish(t_start, load0, probe0, ver)
        nginx, delay = start_nginx()
        servers.append(nginx)
        if delay is None:
            delay = start_delay()
        servers.append(delay)
        fake = start_fake()
        servers.append(fake)
        say("servers: nginx %s, delay %s, fake %s" % (nginx.base, delay.base, fake.base))
        tmpl_zero = OUT / "template-zero.db"
        make_template(tmpl_zero, max(N_ZERO, max(N_LAT.values()), N_CG_SEND_BIG), servers)
        tmpl_big = None
        if SECTIONS & {"3", "4"}:
            tmpl_big = OUT / "template-big.db"
            make_template(tmpl_big, max(N_MEM_PREVIEW, N_MEM_SEND, N_CG_BIG), servers)
        s1 = None
        if SECTIONS & {"1", "4", "6"}:
            s1 = timed("1", section1, nginx, tmpl_zero)
        if "2" in SECTIONS:
            timed("2", section2, delay, tmpl_zero)
        if "3" in SECTIONS:
            timed("3", section3, tmpl_big)
        if "4" in SECTIONS:
            timed("4", section4, nginx, tmpl_zero, tmpl_big, s1)
        if "5" in SECTIONS:
            timed("5", section5, fake, tmpl_zero)
        if "6" in SECTIONS:
            timed("6", section6, tmpl_zero, s1)
        if "7" in SECTIONS:
            timed("7", section7, fake)
        if "8" in SECTIONS:
            timed("8", section8, fake)
        if "4" in SECTIONS:
            timed("profile", perf_profile, tmpl_zero)
    finally:
        for s in servers:
            s.stop()
    finish(t_start, load0, probe0, ver)


def timed(name, fn, *args):
    """Runs one section, noting how long it took."""
    timings = RESULTS["meta"].setdefault("section_seconds", {})
    t = time.monotonic()
    out = fn(*args)
    timings[name] = round(time.monotonic() - t, 1)
    say("  (%s took %.0f s)" % (name, timings[name]))
    return out


def finish(t_start, load0, probe0, ver):
    """Writes the report."""
    elapsed = time.monotonic() - t_start
    load1 = os.getloadavg()
    RESULTS["meta"].update({"elapsed_s": elapsed, "load_end": load1})
    head = ["# `make bench` results", "",
            "%s. %s, %d CPUs%s; %d runs per timed figure%s%s. Load average at start %.2f, at "
            "end %.2f (other processes on the machine add noise to times, not to instruction "
            "counts). A 4 KiB append + fdatasync in build/bench/ took %.2f ms (median; p90 "
            "%.2f) at the start. Took %.0f s. Written by `bench/run_bench.py` (`make bench`); "
            "raw numbers in `%s`."
            % (RESULTS["meta"]["started"], ver, os.cpu_count() or 0,
               ", client pinned to CPU 0 and servers to CPU 1" if PIN else "", RUNS,
               " (BENCH_QUICK: fewer records)" if QUICK else "",
               " (BENCH_FULL: the issue's record counts)" if FULL else "", load0[0], load1[0],
               probe0["median_ms"], probe0["p90_ms"], elapsed, rel(RESULTS_JSON)), ""]
    if TARGETS:
        head += ["## Targets", "", table(["target", "goal", "measured", ""], TARGETS), ""]
    text = "\n".join(head + REPORT).rstrip() + "\n"
    RESULTS_MD.write_text(text)
    RESULTS["log"] = LOG
    RESULTS_JSON.write_text(json.dumps(RESULTS, indent=1, default=str))
    print("\n" + text)
    print("bench: wrote %s (%.0f s)" % (RESULTS_MD, elapsed))


if __name__ == "__main__":
    main()
