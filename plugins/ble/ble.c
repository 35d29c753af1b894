/*
 * ble: BLE beacons and anonymous presence from BlueZ over D-Bus (issue 12).
 * The option table, the lifecycle and the one path every BlueZ property
 * set takes (on_device): decode the advertisement data (adv.c), give the
 * municipality's own beacons their figures (beacon.c), and count everything
 * else as anonymous presence (presence.c). BlueZ itself is bluez.c.
 *
 * Privacy: the raw address goes to emit only as subject_id of a visit, in
 * space "ble" (the agent pseudonymises it with the key of the local day).
 * No log line, health reason or device name holds an address.
 *
 * Threads: everything runs on the agent's loop. docs/plugins/ble.md says
 * what the figures mean and do not mean.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mittari/mittari.h>

#include "adv.h"
#include "beacon.h"
#include "bluez.h"
#include "presence.h"
#include "ratelimit.h"

#define BEACONS_MAX 256
#define COMPLAIN_US (600 * 1000000LL) /* a repeating complaint: at most every 10 min */

struct ble_allow_conf {
    const char *name;
    const char *ibeacon_uuid;
    const char *eddystone_namespace;
    const char *eddystone_url;
};

struct ble_conf {
    const char *bus;
    const char *adapter;
    int64_t rssi_floor;
    int64_t rssi_threshold;
    int64_t window_ms;
    int64_t gap_ms;
    bool visit_events;
    int64_t max_devices;
    int64_t retry_ms;
    struct mittari_list allowlist;
};

static const struct mittari_option allow_options[] = {
    {.name = "name",
     .type = MITTARI_OPT_STRING,
     .flags = MITTARI_OPT_REQUIRED,
     .offset = offsetof(struct ble_allow_conf, name),
     .help = "Device name of the beacons this entry takes ([A-Za-z0-9_-], at most 40): "
             "NAME.MAJOR.MINOR for iBeacons, NAME.INSTANCE for Eddystone UID, NAME for a URL."},
    {.name = "ibeacon_uuid",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct ble_allow_conf, ibeacon_uuid),
     .help = "iBeacon proximity UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)."},
    {.name = "eddystone_namespace",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct ble_allow_conf, eddystone_namespace),
     .help = "Eddystone-UID namespace: 20 hex digits."},
    {.name = "eddystone_url",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct ble_allow_conf, eddystone_url),
     .help = "Eddystone-URL: the expanded URL starts with this text (https://example.fi/)."},
    {0},
};

static const struct mittari_option ble_options[] = {
    {.name = "bus",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct ble_conf, bus),
     .help = "D-Bus address of the bus BlueZ is on; unset = the system bus "
             "($DBUS_SYSTEM_BUS_ADDRESS or /run/dbus/system_bus_socket)."},
    {.name = "adapter",
     .type = MITTARI_OPT_STRING,
     .offset = offsetof(struct ble_conf, adapter),
     .help = "Bluetooth adapter to scan with (hci0, hci1, ...); unset = the first by name."},
    {.name = "rssi_floor",
     .type = MITTARI_OPT_INT,
     .def = "0",
     .min = -127,
     .max = 0,
     .offset = offsetof(struct ble_conf, rssi_floor),
     .help = "Discovery filter: BlueZ reports only devices at or above this RSSI (dBm); 0 = "
             "no floor."},
    {.name = "rssi_threshold",
     .type = MITTARI_OPT_INT,
     .def = "-80",
     .min = -127,
     .max = 20,
     .offset = offsetof(struct ble_conf, rssi_threshold),
     .help = "Presence: a sighting counts when its RSSI is at least this (dBm): the area "
             "counted."},
    {.name = "window",
     .type = MITTARI_OPT_DURATION,
     .def = "5m",
     .min = 1000,
     .max = 900000,
     .offset = offsetof(struct ble_conf, window_ms),
     .help = "Presence window (aligned to UTC multiples): distinct devices are counted per "
             "window; keep it under the ~15 min address rotation."},
    {.name = "gap_timeout",
     .type = MITTARI_OPT_DURATION,
     .def = "1m",
     .min = 1000,
     .max = 3600000,
     .offset = offsetof(struct ble_conf, gap_ms),
     .help = "A device unseen for longer than this has left: its visit (dwell time) ends."},
    {.name = "visit_events",
     .type = MITTARI_OPT_BOOL,
     .def = "true",
     .offset = offsetof(struct ble_conf, visit_events),
     .help = "Emit one ble.visit event per visit with its dwell time and the address as "
             "subject (pseudonymised by the agent, key changing daily)."},
    {.name = "max_devices",
     .type = MITTARI_OPT_INT,
     .def = "4096",
     .min = 16,
     .max = 65536,
     .offset = offsetof(struct ble_conf, max_devices),
     .help = "Addresses remembered at once; more are counted (table_full) and not followed."},
    {.name = "retry_interval",
     .type = MITTARI_OPT_DURATION,
     .def = "5s",
     .min = 100,
     .max = 600000,
     .offset = offsetof(struct ble_conf, retry_ms),
     .help = "Wait before reconnecting to D-Bus or restarting discovery after a failure."},
    {.name = "allowlist",
     .type = MITTARI_OPT_LIST,
     .max = 64,
     .offset = offsetof(struct ble_conf, allowlist),
     .sub = allow_options,
     .sub_size = sizeof(struct ble_allow_conf),
     .help = "The municipality's own beacons: each item a name and one of ibeacon_uuid, "
             "eddystone_namespace, eddystone_url. Everything else is anonymous presence."},
    {0},
};

/* counters, flushed to host->count once a second */
enum {
    C_ADVERTS,
    C_IBEACON,
    C_UID,
    C_URL,
    C_TLM,
    C_MALFORMED,
    C_UNSUPPORTED,
    C_BELOW,
    C_TABLE_FULL,
    C_BEACONS_FULL,
    C_BAD_PROPS,
    C_VISITS,
    C_WINDOWS_SKIPPED,
    C_REFUSED,
    C_RESTARTS,
    C_COUNTERS
};

static const char *const counter_names[C_COUNTERS] = {
    "adverts",        "ibeacon",     "eddystone_uid",   "eddystone_url", "eddystone_tlm",
    "malformed",      "unsupported", "below_threshold", "table_full",    "beacons_full",
    "bad_properties", "visits",      "windows_skipped", "refused",       "discovery_restarts",
};

struct ble {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    const struct ble_conf *conf;
    struct ble_allow allow[64];
    size_t nallow;
    struct ble_beacons beacons;
    struct ble_presence *presence;
    struct ble_bluez *bluez;
    struct ble_bluez_conf bconf;
    struct mittari_timer *tick;
    bool scanning;
    int64_t scan_since;
    int64_t window_start; /* of the window being emitted */
    uint64_t cnt[C_COUNTERS];
    uint64_t restarts_seen, skipped_seen;
    struct mtr_limit malformed_log, refused_log;
};

/* ---- configuration ---- */

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > BLE_BEACON_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

/* One allowlist item into a, or the problem with it (and the key). */
static const char *allow_item(const struct ble_allow_conf *c, struct ble_allow *a, const char **key)
{
    int kinds = !!c->ibeacon_uuid + !!c->eddystone_namespace + !!c->eddystone_url;

    memset(a, 0, sizeof(*a));
    *key = "name";
    if (!valid_name(c->name))
        return "'name' must be 1 to 40 characters of [A-Za-z0-9_-]";
    *key = NULL;
    if (kinds != 1)
        return "give exactly one of ibeacon_uuid, eddystone_namespace, eddystone_url";
    a->name = c->name;
    if (c->ibeacon_uuid) {
        *key = "ibeacon_uuid";
        a->kind = BLE_ALLOW_IBEACON;
        if (ble_uuid_parse(c->ibeacon_uuid, strlen(c->ibeacon_uuid), a->id))
            return "not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)";
    } else if (c->eddystone_namespace) {
        *key = "eddystone_namespace";
        a->kind = BLE_ALLOW_EDDYSTONE_NS;
        if (ble_hex_parse(c->eddystone_namespace, strlen(c->eddystone_namespace), a->id, 10))
            return "not an Eddystone namespace (20 hex digits)";
    } else {
        *key = "eddystone_url";
        a->kind = BLE_ALLOW_EDDYSTONE_URL;
        a->url = c->eddystone_url;
        if (strncmp(a->url, "http://", 7) != 0 && strncmp(a->url, "https://", 8) != 0)
            return "an Eddystone URL starts with http:// or https://";
    }
    return NULL;
}

static int ble_check(const void *config, const struct mittari_checker *chk)
{
    const struct ble_conf *c = config;
    struct ble_allow a;
    const char *key;
    char path[64];
    int n = 0;

    for (size_t i = 0; i < c->allowlist.n; i++) {
        const char *problem =
            allow_item(MITTARI_LIST_ITEM(&c->allowlist, struct ble_allow_conf, i), &a, &key);
        if (!problem)
            continue;
        if (key)
            snprintf(path, sizeof(path), "allowlist[%zu].%s", i, key);
        else
            snprintf(path, sizeof(path), "allowlist[%zu]", i);
        chk->error(chk, path, "%s", problem);
        n++;
    }
    if (c->rssi_floor && c->rssi_floor > c->rssi_threshold) {
        chk->error(chk, "rssi_floor",
                   "rssi_floor (%lld) above rssi_threshold (%lld): BlueZ would hide devices "
                   "presence must count",
                   (long long)c->rssi_floor, (long long)c->rssi_threshold);
        n++;
    }
    return n;
}

/* ---- emitting ---- */

static void flush_counters(struct ble *b)
{
    struct ble_bluez_stats st;
    ble_bluez_stats(b->bluez, &st);
    b->cnt[C_RESTARTS] += st.discovery_restarts - b->restarts_seen;
    b->restarts_seen = st.discovery_restarts;
    uint64_t skipped = ble_presence_skipped(b->presence);
    b->cnt[C_WINDOWS_SKIPPED] += skipped - b->skipped_seen;
    b->skipped_seen = skipped;
    for (int i = 0; i < C_COUNTERS; i++) {
        if (b->cnt[i])
            b->h->count(b->ctx, NULL, counter_names[i], b->cnt[i]);
        b->cnt[i] = 0;
    }
}

static void emit(struct ble *b, struct mittari_reading *r)
{
    int rc = b->h->emit(b->ctx, r);
    if (rc) {
        b->cnt[C_REFUSED]++;
        mtr_log(&b->refused_log, b->h, b->ctx, MITTARI_LOG_WARNING, "a %s reading was refused: %s",
                r->metric,
                rc == -EAGAIN              ? "intake queue full"
                : mittari_strerror_own(rc) ? mittari_strerror_own(rc)
                                           : strerror(-rc));
    }
}

static void gauge(struct ble *b, const char *device, const char *metric, const char *unit, double v)
{
    struct mittari_reading r = MITTARI_READING_INIT;
    r.ts_us = b->window_start;
    r.device = device;
    r.metric = metric;
    r.unit = unit;
    r.kind = MITTARI_KIND_GAUGE;
    r.value = v;
    emit(b, &r);
}

static void beacon_window(void *arg, const struct ble_beacon *bc)
{
    struct ble *b = arg;
    const char *d = bc->device;

    gauge(b, d, "ble.beacon.adverts", NULL, bc->adverts);
    if (bc->rssi_n)
        gauge(b, d, "ble.beacon.rssi", "dBm", (double)bc->rssi_sum / bc->rssi_n);
    if (bc->has_power)
        gauge(b, d, bc->kind == BLE_FRAME_IBEACON ? "ble.ibeacon.power" : "ble.eddystone.tx_power",
              "dBm", bc->power);
    if (!bc->has_tlm)
        return;
    /* "not supported" values are absent: no reading, never 0 or -128 */
    if (bc->tlm.has_battery)
        gauge(b, d, "ble.tlm.battery", "mV", bc->tlm.battery_mv);
    if (bc->tlm.has_temperature)
        gauge(b, d, "ble.tlm.temperature", "°C", ble_tlm_celsius(bc->tlm.temperature_raw));
    gauge(b, d, "ble.tlm.adv_count", NULL, bc->tlm.adv_count);
    gauge(b, d, "ble.tlm.uptime", "s", bc->tlm.uptime_ds / 10.0);
}

static void beacon_drop(void *arg, const struct ble_beacon *bc)
{
    (void)arg;
    (void)bc;
}

static void on_window(void *arg, const struct ble_window *w)
{
    struct ble *b = arg;

    /* a window the scanner did not cover whole would undercount: no figures */
    if (!b->scanning || b->scan_since > w->start_us) {
        b->cnt[C_WINDOWS_SKIPPED]++;
        ble_beacons_window(&b->beacons, beacon_drop, NULL);
        return;
    }
    b->window_start = w->start_us;
    gauge(b, NULL, "ble.presence.devices", NULL, w->devices);
    gauge(b, NULL, "ble.presence.devices_stable", NULL, w->stable);
    gauge(b, NULL, "ble.presence.visits", NULL, w->visits);
    if (w->visits) {
        gauge(b, NULL, "ble.presence.dwell_mean", "s", w->dwell_mean_s);
        gauge(b, NULL, "ble.presence.dwell_median", "s", w->dwell_median_s);
        gauge(b, NULL, "ble.presence.dwell_max", "s", w->dwell_max_s);
    }
    ble_beacons_window(&b->beacons, beacon_window, b);
}

static void on_visit(void *arg, const struct ble_dev *d, int64_t first_us, int64_t last_us)
{
    struct ble *b = arg;
    struct mittari_reading r = MITTARI_READING_INIT;
    struct mittari_tag tag = {"address_type", ble_addr_kind_name(d->kind)};

    b->cnt[C_VISITS]++;
    if (!b->conf->visit_events)
        return;
    r.ts_us = first_us;
    r.metric = "ble.visit";
    r.unit = "s";
    r.kind = MITTARI_KIND_EVENT;
    r.value = (double)(last_us - first_us) / 1e6;
    r.subject_id = d->addr; /* raw: the agent pseudonymises it inside emit */
    r.subject_id_len = 6;
    r.subject_space = "ble";
    r.tags = &tag;
    r.ntags = 1;
    emit(b, &r);
}

/* ---- BlueZ ---- */

static void frame(struct ble *b, struct ble_dev *d, int rc, const struct ble_frame *f,
                  const struct ble_props *p)
{
    static const int kind_counter[] = {[BLE_FRAME_IBEACON] = C_IBEACON,
                                       [BLE_FRAME_EDDYSTONE_UID] = C_UID,
                                       [BLE_FRAME_EDDYSTONE_URL] = C_URL,
                                       [BLE_FRAME_EDDYSTONE_TLM] = C_TLM};
    bool has_rssi = p->has_rssi || (d && (d->flags & BLE_DEV_RSSI));
    int rssi = p->has_rssi ? p->rssi : d ? d->rssi : 0;

    if (rc == BLE_ADV_MALFORMED) {
        b->cnt[C_MALFORMED]++;
        return;
    }
    if (rc == BLE_ADV_UNSUPPORTED) {
        b->cnt[C_UNSUPPORTED]++;
        return;
    }
    if (rc == BLE_FRAME_NONE)
        return;
    b->cnt[kind_counter[rc]]++;
    if (rc == BLE_FRAME_EDDYSTONE_TLM) { /* no identity of its own: the sender's (tlm-plain.md) */
        if (d && d->beacon >= 0)
            ble_beacons_record(&b->beacons, d->beacon, f, has_rssi, rssi);
        return;
    }
    int i = ble_beacons_match(&b->beacons, f);
    if (i == -ENOSPC)
        b->cnt[C_BEACONS_FULL]++;
    if (i < 0)
        return;
    ble_beacons_record(&b->beacons, i, f, has_rssi, rssi);
    if (d) {
        d->beacon = (int16_t)i;
        if (!(d->flags & BLE_DEV_BEACON))
            ble_presence_exclude(b->presence, d);
    }
}

static void decode(struct ble *b, struct ble_dev *d, const struct ble_props *p)
{
    struct ble_frame f;
    int rc, malformed = 0;

    for (size_t i = 0; i < p->nmfr; i++) {
        rc = ble_adv_manufacturer(p->mfr[i].company, p->mfr[i].d, p->mfr[i].n, &f);
        malformed += rc == BLE_ADV_MALFORMED;
        frame(b, d, rc, &f, p);
    }
    for (size_t i = 0; i < p->nsvc; i++) {
        rc = ble_adv_service(p->svc[i].uuid, p->svc[i].d, p->svc[i].n, &f);
        malformed += rc == BLE_ADV_MALFORMED;
        frame(b, d, rc, &f, p);
    }
    if (malformed) /* what was wrong, never whose it was */
        mtr_log(&b->malformed_log, b->h, b->ctx, MITTARI_LOG_NOTICE,
                "rejected a malformed iBeacon or Eddystone frame (counted as 'malformed')");
}

static void on_device(void *arg, const struct ble_props *p)
{
    struct ble *b = arg;
    int64_t now = ble_presence_advance(b->presence, b->h->now(b->ctx));
    struct ble_dev *d = ble_presence_get(b->presence, p->addr, now);
    /* BlueZ's cached devices come without RSSI: not seen now */
    bool seen = p->full ? p->has_rssi : (p->has_rssi || p->nmfr || p->nsvc || p->has_txpower);

    b->cnt[C_BAD_PROPS] += p->bad;
    if (seen)
        b->cnt[C_ADVERTS]++;
    if (!d)
        b->cnt[C_TABLE_FULL]++;
    if (d && p->fetched)
        d->flags = (uint8_t)((d->flags & ~BLE_DEV_PENDING) | BLE_DEV_ASKED);
    if (d && p->has_type)
        d->kind = (uint8_t)ble_addr_kind(p->random, p->addr);
    if (d && p->has_rssi) {
        d->rssi = p->rssi;
        d->flags |= BLE_DEV_RSSI;
    }
    decode(b, d, p);
    if (!d || (d->flags & BLE_DEV_BEACON))
        return;
    /* a device first heard of in a PropertiesChanged (its entry forgotten
     * while BlueZ kept the object): ask for its type and RSSI once */
    if ((d->kind == 0 || !(d->flags & BLE_DEV_RSSI)) &&
        !(d->flags & (BLE_DEV_PENDING | BLE_DEV_ASKED)) && !p->full &&
        ble_bluez_fetch(b->bluez, p->addr) == 0)
        d->flags |= BLE_DEV_PENDING;
    if (!seen || !(d->flags & BLE_DEV_RSSI))
        return;
    if (!ble_presence_sighting(b->presence, d, d->rssi, now))
        b->cnt[C_BELOW]++;
}

static void on_removed(void *arg, const uint8_t addr[6])
{
    /* BlueZ forgets an unpaired device 30 s after its last advertisement:
     * not a departure. The visit ends only by gap_timeout. */
    (void)arg;
    (void)addr;
}

static void on_health(void *arg, bool up, const char *reason)
{
    struct ble *b = arg;
    int64_t now = ble_presence_advance(b->presence, b->h->now(b->ctx));

    /* windows that ended before this change close with the old state */
    if (up && !b->scanning)
        b->scan_since = now;
    b->scanning = up;
    b->h->set_health(b->ctx, NULL, up ? MITTARI_HEALTH_UP : MITTARI_HEALTH_DOWN, reason);
}

static void on_tick(void *arg)
{
    struct ble *b = arg;
    ble_presence_advance(b->presence, b->h->now(b->ctx));
    flush_counters(b);
}

/* ---- lifecycle ---- */

static void ble_free(struct ble *b)
{
    ble_bluez_destroy(b->bluez);
    ble_presence_destroy(b->presence);
    ble_beacons_free(&b->beacons);
    free(b);
}

static int ble_create(const struct mittari_host *host, struct mittari_ctx *ctx, const void *config,
                      void **state)
{
    const struct ble_conf *c = config;
    struct ble *b;
    const char *key, *problem;
    int rc;

    b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    *b = (struct ble){.h = host, .ctx = ctx, .conf = c};
    b->malformed_log.interval_us = b->refused_log.interval_us = COMPLAIN_US;
    for (size_t i = 0; i < c->allowlist.n && i < 64; i++) {
        problem = allow_item(MITTARI_LIST_ITEM(&c->allowlist, struct ble_allow_conf, i),
                             &b->allow[i], &key);
        if (problem) {
            host->log(ctx, MITTARI_LOG_ERR, "allowlist[%zu]%s%s: %s", i, key ? "." : "",
                      key ? key : "", problem);
            free(b);
            return MITTARI_ECONFIG;
        }
        b->nallow++;
    }
    b->bconf = (struct ble_bluez_conf){.bus_address = c->bus,
                                       .adapter = c->adapter,
                                       .rssi_floor = (int)c->rssi_floor,
                                       .retry_ms = c->retry_ms};
    struct ble_presence_conf pc = {.capacity = (size_t)c->max_devices,
                                   .window_us = c->window_ms * 1000,
                                   .gap_us = c->gap_ms * 1000,
                                   .rssi_threshold = (int)c->rssi_threshold};
    struct ble_presence_ops po = {.visit = on_visit, .window = on_window, .arg = b};
    struct ble_bluez_ops bo = {
        .health = on_health, .device = on_device, .removed = on_removed, .arg = b};
    rc = ble_beacons_init(&b->beacons, b->allow, b->nallow, BEACONS_MAX);
    if (!rc)
        rc = ble_presence_create(&b->presence, &pc, &po);
    if (!rc)
        rc = ble_bluez_create(&b->bluez, host, ctx, &b->bconf, &bo);
    if (rc) {
        ble_free(b);
        return rc;
    }
    *state = b;
    return 0;
}

static int ble_start(void *state)
{
    struct ble *b = state;
    int rc = b->h->timer_start(b->ctx, 1000, 1000, on_tick, b, &b->tick);
    if (rc)
        return rc;
    ble_presence_advance(b->presence, b->h->now(b->ctx));
    ble_bluez_start(b->bluez);
    return 0;
}

static void ble_stop(void *state)
{
    struct ble *b = state;

    /* windows that ended before now close first, with their figures; the
     * open window is incomplete and gives none; visits in progress end
     * here with the dwell so far */
    ble_presence_advance(b->presence, b->h->now(b->ctx));
    ble_bluez_stop(b->bluez);
    b->scanning = false;
    ble_presence_flush(b->presence);
    flush_counters(b);
    if (b->tick)
        b->h->timer_stop(b->tick);
    b->tick = NULL;
}

static void ble_destroy(void *state)
{
    ble_free(state);
}

static const struct mittari_plugin ble_plugin = {
    .abi_version = MITTARI_ABI_VERSION,
    .size = sizeof(struct mittari_plugin),
    .name = "ble",
    .version = "1.0",
    .description = "BLE beacons (iBeacon, Eddystone) and anonymous presence from BlueZ over D-Bus",
    .options = ble_options,
    .config_size = sizeof(struct ble_conf),
    .create = ble_create,
    .start = ble_start,
    .stop = ble_stop,
    .destroy = ble_destroy,
    .check = ble_check,
};

MITTARI_PLUGIN_DEFINE(ble_plugin)
