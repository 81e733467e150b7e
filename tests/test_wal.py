# The -wal file does not keep its peak size after a run while another
# connection stays open on the file (an application, a dashboard):
#   - the extension's audit connection sets journal_size_limit, so once a
#     checkpoint has emptied the WAL (here: the other connection's, as its
#     own writes would trigger), the next run's first commit cuts the file
#     back to the limit (without it the file stays at its peak: SQLite only
#     rewinds the WAL);
#   - callrail_prune ends with a TRUNCATE checkpoint: the file is emptied
#     even though the other connection is open.
# Sizes are compared with the run's own peak, no clocks involved.
import os
import sqlite3

from helpers import NO_QUOTA, companies_dest, dest_sql, names_query, run, send_query

LIMIT = 4 * 1024 * 1024  # CR_JOURNAL_SIZE_LIMIT


def wal_size(ctx):
    path = ctx.db + "-wal"
    return os.path.getsize(path) if os.path.exists(path) else 0


def big_run(ctx):
    """A run whose audit rows make the WAL larger than the limit, with
    another connection open on the file (returned)."""
    ctx.fake.config(quota=NO_QUOTA)
    cfg = companies_dest(concurrency=8, rate_limit={"per_hour": 10 ** 7, "per_day": 10 ** 8})
    run(ctx, dest_sql("co", cfg), "SELECT 1;")
    other = sqlite3.connect(ctx.db)
    other.execute("SELECT count(*) FROM callrail_responses").fetchone()
    run(ctx, "", "SELECT count(*) FROM callrail_send('co', 'SELECT ''Shop '' || value AS name"
                 " FROM json_each(''[%s]'')');" % ",".join(str(i) for i in range(1200)))
    peak = wal_size(ctx)
    assert peak > LIMIT, "the run should have grown the WAL past the limit: %d" % peak
    return other, peak


def test_after_a_checkpoint_the_next_run_cuts_the_wal_back_to_the_limit(ctx):
    other, peak = big_run(ctx)
    busy, frames, done = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and frames == done, "the run left nothing reading: all can be checkpointed"
    assert wal_size(ctx) == peak, "a checkpoint alone does not shrink the file"
    run(ctx, "", send_query("co", names_query(3, "Next")))
    assert wal_size(ctx) <= LIMIT, "-wal is %d bytes after the next run (peak %d)" % (
        wal_size(ctx), peak)
    other.close()


def test_callrail_prune_gives_the_wal_back_while_another_connection_is_open(ctx):
    other, peak = big_run(ctx)
    run(ctx, "", "SELECT callrail_prune(36500);", cred=False)
    assert wal_size(ctx) == 0, "-wal is %d bytes after callrail_prune (peak %d)" % (
        wal_size(ctx), peak)
    assert other.execute("SELECT count(*) FROM callrail_responses").fetchone()[0] == 1200
    other.close()
