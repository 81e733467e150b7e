# callrail_accounts(credential) (README "Functions"): GET /v3/a.json, the
# accounts an API key can see.
#
# Properties checked, against the fake's request log:
#   - SELECT id, name, numeric_id returns exactly the fake's accounts that
#     `test-token` can see, from GET /v3/a.json with the credential's token;
#   - every page is read when there are more accounts than fit in one,
#     also past 100 pages (0.1.0 stopped there without a word);
#   - pages are streamed: 12 pages of 6 MB each (75 MB of accounts) are
#     read with a peak RSS far below their sum;
#   - a wrong token is an SQL error naming 401;
#   - an unknown or NULL credential is an SQL error naming it, and nothing
#     is sent;
#   - it writes no audit rows.
import json

from helpers import ACC, responses, run, runs


# -- tests ----------------------------------------------------------------------------------

ACCOUNTS_Q = "SELECT id, name, numeric_id FROM callrail_accounts(%s);"


def test_accounts_lists_the_accounts_the_token_can_see(ctx):
    rows, _ = run(ctx, "", ACCOUNTS_Q % "'fake'")
    assert rows == [{"id": ACC, "name": "Test Account", "numeric_id": 123456789}], rows
    log = ctx.fake.log()
    assert len(log) == 1, log
    (e,) = log
    assert (e["method"], e["path"], e["status"]) == ("GET", "/v3/a.json", 200)
    assert e["headers"]["authorization"] == 'Token token="test-token"'
    assert e["headers"]["accept"] == "application/json"
    assert [a["id"] for a in json.loads(e["response"])["accounts"]] == [ACC]
    assert responses(ctx) == [] and runs(ctx) == []


def test_accounts_reads_every_page(ctx):
    accounts = [{"id": "ACC%032d" % i, "name": "Account %d" % i, "numeric_id": 500000000 + i}
                for i in range(1, 301)]
    ctx.fake.config(accounts=accounts,
                    tokens={"test-token": {"accounts": [a["id"] for a in accounts],
                                           "admin": True}})
    rows, _ = run(ctx, "", ACCOUNTS_Q % "'fake'")
    assert rows == accounts, (len(rows), rows[:2])
    log = ctx.fake.log()
    assert [(e["path"], e["status"]) for e in log] == [("/v3/a.json", 200)] * 2, log
    pages = [dict(p.split("=") for p in e["query"].split("&")).get("page", "1") for e in log]
    assert pages == ["1", "2"], pages
    assert sum(len(json.loads(e["response"])["accounts"]) for e in log) == 300


def test_accounts_with_a_wrong_token_is_an_sql_error_naming_401(ctx):
    setup = ctx.setup_credential("bad", "wrong-token")
    rows, rest = run(ctx, setup, ACCOUNTS_Q % "'bad'", expect_error=True)
    assert rows == []
    assert "error" in rest.lower() and "callrail_accounts" in rest and "401" in rest, rest
    assert "wrong-token" not in rest
    log = ctx.fake.log()
    assert [(e["path"], e["status"]) for e in log] == [("/v3/a.json", 401)], log


def test_accounts_of_an_unknown_or_null_credential_is_an_sql_error_naming_it(ctx):
    rows, rest = run(ctx, "", ACCOUNTS_Q % "'nosuchcred'", expect_error=True)
    assert rows == [] and "nosuchcred" in rest and "error" in rest.lower(), rest
    rows, rest = run(ctx, "", ACCOUNTS_Q % "NULL", expect_error=True)
    assert rows == [] and "error" in rest.lower() and "credential" in rest, rest
    assert ctx.fake.log() == []


def test_accounts_follows_every_page_past_100(ctx):
    ctx.fake.config(generated_accounts=101 * 250 + 1)
    rows, _ = run(ctx, "", "SELECT count(*) AS n, count(DISTINCT id) AS d, max(id) AS last"
                           " FROM callrail_accounts('fake');")
    assert rows == [{"n": 101 * 250 + 2, "d": 101 * 250 + 2, "last": "ACC9%031d" % (101 * 250 + 1)}]
    assert len(ctx.fake.log()) == 102


def peak_rss_kib(out):
    """The VmHWM the script printed (its last line)."""
    (line,) = [ln for ln in out.splitlines() if ln.startswith("VmHWM:")]
    return int(line.split()[1])


def test_accounts_streams_big_pages_in_bounded_memory(ctx):
    # 3,000 accounts of 25 kB: 12 pages of 6.25 MB, 75 MB in all.  Holding
    # them all (as 0.1.0 did, with copies) needs several times that; one page
    # at a time needs a few times one page.
    ctx.fake.config(generated_accounts=3000, account_padding=25000)
    script = (ctx.setup_credential() + "SELECT count(*), sum(length(json)) > 75000000"
              " FROM callrail_accounts('fake');\n"
              ".system grep VmHWM /proc/$PPID/status\n")
    _, out = ctx.sql(script)
    assert "3001|1" in out, out
    kib = peak_rss_kib(out)
    print("     peak RSS reading 75 MB of accounts: %d MiB" % (kib // 1024), flush=True)
    assert kib < 60 * 1024, "peak RSS %d MiB" % (kib // 1024)


test_accounts_streams_big_pages_in_bounded_memory.slow = True
