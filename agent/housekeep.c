#include "housekeep.h"

#include <inttypes.h>

#include "diag.h"
#include "util.h"

#define MOD "log"
#define DELETE_CHUNK 50000
#define DELETE_ROUNDS 40
#define COMPLAIN_US (600 * 1000000LL)
#define ADD(f, n) atomic_fetch_add_explicit(&e->stats->f, (uint64_t)(n), memory_order_relaxed)

/* Deletes rows with seq <= upto in chunks, each in its own transaction with
 * the high-water mark, so a crash never rewinds sequence numbers. */
static int delete_upto(struct mt_housekeep *h, const struct mt_housekeep_env *e, int64_t upto,
                       uint64_t stop_below, int64_t *total)
{
    int rc = 0;

    *total = 0;
    for (int round = 0; round < DELETE_ROUNDS; round++) {
        int64_t n = 0;
        rc = mt_log_begin(e->db);
        if (!rc)
            rc = mt_log_put_meta(e->db, "last_seq", e->last_seq);
        if (!rc)
            rc = mt_log_delete_upto(e->db, upto, DELETE_CHUNK, &n);
        if (!rc)
            rc = mt_log_commit(e->db);
        if (rc) {
            mt_log_rollback(e->db);
            mt_complain(&h->c_cap, MT_ERR, MOD, COMPLAIN_US, "cannot delete old readings: %s",
                        mt_log_errmsg(e->db));
            break;
        }
        *total += n;
        if (n < DELETE_CHUNK)
            break;
        uint64_t used;
        if (stop_below && mt_log_used_bytes(e->db, &used) == 0 && used <= stop_below)
            break;
    }
    return rc;
}

int mt_housekeep_retention(struct mt_housekeep *h, const struct mt_housekeep_env *e)
{
    int64_t young, n = 0;

    if (e->conf->retention_ms <= 0)
        return 0;
    /* checked: a huge retention means "keep", never a cutoff in the future */
    int64_t cutoff = mt_add_sat(mt_now_us(), -mt_ms_to_us(e->conf->retention_ms));
    /* only what every consumer passed can go: the search for the first
     * young row reads no further (an output down for days leaves old rows
     * it has not passed, which every housekeeping would read again) */
    if (e->delivered <= 0)
        return 0;
    int rc = mt_log_first_young(e->db, cutoff, e->delivered, &young);
    if (rc)
        return rc;
    int64_t upto = young == INT64_MAX ? e->delivered : young - 1;
    if (upto <= 0)
        return 0;
    rc = delete_upto(h, e, upto, 0, &n);
    if (n > 0) {
        ADD(deleted_retention, n);
        mt_diag(MT_DEBUG, MOD, "retention removed %" PRId64 " delivered readings", n);
    }
    return rc;
}

/* block_inputs: accept readings again */
static void unblock(struct mt_housekeep *h, const struct mt_housekeep_env *e, const char *why)
{
    if (atomic_load(e->full)) {
        atomic_store(e->full, false);
        mt_complain_clear(&h->c_full, MOD, "%s; inputs accepted", why);
    }
}

static int drop_oldest(struct mt_housekeep *h, const struct mt_housekeep_env *e, uint64_t used,
                       uint64_t target)
{
    int64_t lo, hi, rows, n = 0;
    int rc = mt_log_bounds(e->db, &lo, &hi, &rows);
    if (rc || rows <= 0)
        return rc;
    uint64_t per_row = used / (uint64_t)rows + 1;
    int64_t drop = (int64_t)((used - target) / per_row) + 1;
    rc = delete_upto(h, e, lo + drop - 1, target, &n);
    ADD(dropped_cap, n);
    mt_complain(&h->c_cap, MT_WARNING, MOD, COMPLAIN_US,
                "log reached its size cap (cap %" PRIu64 " bytes); policy drop_oldest dropped %" PRId64
                " undelivered readings (seq %" PRId64 "..%" PRId64 ")",
                e->conf->max_size, n, lo, lo + n - 1);
    return rc;
}

/* The size cap. Above the cap, or at all above 90 % of it while inputs are
 * blocked: first delete what every consumer has passed, down to 90 %; then
 * the policy. Inputs blocked come back once the log is at or below 90 %
 * (issue 15: before, nothing deleted between 90 and 100 %, so they never
 * did), or at once when the cap is lifted or the policy changed. */
int mt_housekeep_cap(struct mt_housekeep *h, const struct mt_housekeep_env *e)
{
    uint64_t used, target;
    int64_t n = 0;
    int rc;

    if (!e->conf->max_size) {
        unblock(h, e, "the log has no size cap any more");
        return 0;
    }
    if (e->conf->policy != MT_POLICY_BLOCK_INPUTS)
        unblock(h, e, "policy is no longer block_inputs");
    rc = mt_log_used_bytes(e->db, &used);
    if (rc)
        return rc;
    target = e->conf->max_size / 10 * 9;
    bool blocked = atomic_load(e->full);
    if (used <= (blocked ? target : e->conf->max_size)) {
        if (used <= target)
            unblock(h, e, "log at or below 90 % of its size cap again");
        return 0;
    }
    /* 1. what every consumer has already passed, whatever its age */
    int64_t upto = e->delivered;
    if (upto > 0) {
        rc = delete_upto(h, e, upto, target, &n);
        ADD(deleted_cap_delivered, n);
        if (!rc)
            rc = mt_log_used_bytes(e->db, &used);
        if (rc)
            return rc;
        if (used <= target) {
            /* now, not at the next housekeeping: inputs wait for nothing else */
            unblock(h, e, "log at or below 90 % of its size cap again");
            return 0;
        }
        if (!blocked && used <= e->conf->max_size)
            return 0;
    }
    if (blocked)
        return 0; /* still waiting for consumers to pass more */
    /* 2. the policy */
    if (e->conf->policy == MT_POLICY_BLOCK_INPUTS) {
        atomic_store(e->full, true);
        mt_complain(&h->c_full, MT_WARNING, MOD, COMPLAIN_US,
                    "log reached its size cap (%" PRIu64 " bytes in use, cap %" PRIu64
                    "); policy block_inputs: refusing new readings until outputs catch up",
                    used, e->conf->max_size);
        return 0;
    }
    return drop_oldest(h, e, used, target);
}
