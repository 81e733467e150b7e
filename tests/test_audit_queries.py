# The audit stays queryable at scale, and schema 2 is one schema:
#   - every query of README.md's "Auditing" section (extracted from the
#     README, so the manual and this test cannot drift) runs, and its
#     EXPLAIN QUERY PLAN reads callrail_responses through an index: never a
#     full SCAN of the table;
#   - the query a keyed run starts with (the destination's unresolved keys)
#     reads the partial index of unresolved rows alone (it covers it), and
#     the statement that settles unknown rows reads that index, not the table;
#   - a fresh database and a 0.1.0 database upgraded by the extension end
#     with the same tables, columns, constraints and indexes.
import json
import os
import re
import shutil
import subprocess

from helpers import companies_dest, dest_sql, names_query, run, send_query

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUESTIONS = 6  # last run, failures of a run, N days by state, a key, unresolved, quota


def readme_queries():
    """The statements of the sql blocks of README.md's "## Auditing" section."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("\n## Auditing\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    stmts = []
    for block in blocks:
        code = "\n".join(line for line in block.splitlines() if not line.startswith("--"))
        stmts += [s.strip() for s in code.split(";") if s.strip()]
    return stmts


def shell(ctx, sql, db=None):
    proc = subprocess.run(["sqlite3", "-batch", db or ctx.db], input=sql, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, (sql, proc.stderr)
    return proc.stdout


def full_scans(plan):
    """Lines of a query plan that scan callrail_responses without an index."""
    return [line for line in plan.splitlines()
            if re.search(r"SCAN (callrail_responses|r)\b", line) and "INDEX" not in line]


def test_every_readme_audit_query_runs_and_reads_callrail_responses_through_an_index(ctx):
    run(ctx, dest_sql("companies", companies_dest(key="name")),
        send_query("companies", names_query(3)))
    stmts = readme_queries()
    assert len(stmts) == QUESTIONS, stmts
    for stmt in stmts:
        shell(ctx, stmt + ";")  # it runs on a real audit
        plan = shell(ctx, "EXPLAIN QUERY PLAN " + stmt + ";")
        assert full_scans(plan) == [], "full scan of callrail_responses:\n%s\n%s" % (stmt, plan)
        if "callrail_responses" in stmt:
            assert "callrail_responses_" in plan, (stmt, plan)


def test_full_scans_are_detected(ctx):
    """The check above can fail: a query on an unindexed column is caught."""
    ctx.sql("SELECT 1;")
    plan = shell(ctx, "EXPLAIN QUERY PLAN SELECT * FROM callrail_responses WHERE error = 'x';")
    assert full_scans(plan), plan


def c_constant(path, name):
    """The SQL text of the C string constant `name` in ext/`path`."""
    src = open(os.path.join(ROOT, "ext", path)).read()
    body = re.search(name + r"\[\] =\s*(.*?);\n", src, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', body)).replace('\\"', '"')


def test_a_keyed_run_reads_its_unresolved_keys_through_the_partial_index(ctx):
    ctx.sql("SELECT 1;")
    plan = shell(ctx, "EXPLAIN QUERY PLAN " + c_constant("cr_request.c", "cr_sql_unresolved") + ";")
    assert "USING COVERING INDEX callrail_responses_unresolved" in plan, plan
    assert full_scans(plan) == [], plan


def test_settling_unknown_rows_reads_only_the_partial_index(ctx):
    ctx.sql("SELECT 1;")
    plan = shell(ctx, "EXPLAIN QUERY PLAN " + c_constant("cr_prune.c", "cr_sql_settle") + ";")
    assert "USING INDEX callrail_responses_unresolved" in plan, plan
    assert "PRIMARY KEY (rowid" not in plan and full_scans(plan) == [], plan


def normalised_schema(ctx, db):
    """type, name, table and SQL (comments, quotes, IF NOT EXISTS and
    spacing taken out) of every object in db's sqlite_schema."""
    out = shell(ctx, ".mode json\nSELECT type, name, tbl_name, sql FROM sqlite_schema"
                " ORDER BY name;", db=db)
    rows = []
    for r in json.loads(out):
        rec = "%s|%s|%s|%s" % (r["type"], r["name"], r["tbl_name"], r["sql"])
        sql = re.sub(r"--[^\n]*", "", rec)
        sql = sql.replace('"', "").replace("IF NOT EXISTS ", "")
        sql = re.sub(r"\s+", " ", sql)
        sql = re.sub(r" ?([(),]) ?", r"\1", sql).strip()
        rows.append(sql)
    return rows


def test_a_fresh_database_and_an_upgraded_0_1_0_database_have_the_same_schema(ctx):
    upgraded = os.path.join(ctx.dir, "upgraded.db")
    shutil.copy(os.path.join(ROOT, "tests", "fixtures", "v0_1_0.db"), upgraded)
    ctx.sql("SELECT 1;")
    ctx.sql("SELECT 1;", db=upgraded)
    fresh, old = normalised_schema(ctx, ctx.db), normalised_schema(ctx, upgraded)
    assert len(fresh) >= 12 and any("callrail_responses_unresolved" in r for r in fresh), fresh
    assert fresh == old, "\n".join(
        "fresh:    %s\nupgraded: %s" % (a, b) for a, b in zip(fresh, old) if a != b)
