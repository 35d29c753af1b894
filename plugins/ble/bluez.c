/*
 * bluez: the BlueZ D-Bus client (bluez.h). Facts: ../shared/DEVICES.md
 * section 6 (org.bluez.Adapter1, org.bluez.Device1).
 */
#include "bluez.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>

#include "adv.h"
#include "props.h"
#include "sdloop.h"

#define BLUEZ "org.bluez"
#define ADAPTER1 "org.bluez.Adapter1"
#define DEVICE1 "org.bluez.Device1"
#define PROPS "org.freedesktop.DBus.Properties"
#define OBJMGR "org.freedesktop.DBus.ObjectManager"
#define SYSTEM_BUS "unix:path=/run/dbus/system_bus_socket"

enum state {
    ST_IDLE,         /* not started, or stopped */
    ST_DISCONNECTED, /* no bus: retry timer */
    ST_NO_OWNER,     /* nobody owns org.bluez */
    ST_QUERY,        /* GetManagedObjects in flight */
    ST_NO_ADAPTER,
    ST_POWERED_OFF,
    ST_STARTING, /* SetDiscoveryFilter / StartDiscovery in flight */
    ST_FAILED,   /* discovery could not start: retry timer */
    ST_SCANNING,
};

struct ble_bluez {
    const struct mittari_host *h;
    struct mittari_ctx *ctx;
    const struct ble_bluez_conf *conf;
    struct ble_bluez_ops ops;
    sd_bus *bus;
    struct ble_sdloop *loop;
    sd_bus_slot *call; /* the query or discovery call in flight, cancelled on changes */
    struct mittari_timer *retry;
    char *owner; /* unique name of org.bluez's owner */
    char adapter[64];
    char adapter_path[80];
    int state;
    bool up_reported, down_reported;
    char last_reason[160];
    bool connected_once;
    struct ble_bluez_stats stats;
};

static void query(struct ble_bluez *b);
static void start_discovery(struct ble_bluez *b);

/* ---- health ---- */

static void set_state(struct ble_bluez *b, int state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_state(struct ble_bluez *b, int state, const char *fmt, ...)
{
    char reason[160] = "";
    va_list ap;

    b->state = state;
    if (state == ST_QUERY || state == ST_STARTING || state == ST_IDLE)
        return; /* transient: the outcome is reported */
    if (fmt) {
        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
    }
    bool up = state == ST_SCANNING;
    if (up ? b->up_reported : (b->down_reported && strcmp(reason, b->last_reason) == 0))
        return;
    b->up_reported = up;
    b->down_reported = !up;
    snprintf(b->last_reason, sizeof(b->last_reason), "%s", reason);
    b->ops.health(b->ops.arg, up, reason);
}

static void cancel_call(struct ble_bluez *b)
{
    b->call = sd_bus_slot_unref(b->call);
}

/* ---- retries ---- */

static void connect_bus(struct ble_bluez *b);

static void on_retry(void *arg)
{
    struct ble_bluez *b = arg;
    b->h->timer_stop(b->retry);
    b->retry = NULL;
    if (b->state == ST_DISCONNECTED) {
        connect_bus(b);
    } else if (b->state == ST_FAILED) {
        if (b->adapter_path[0])
            start_discovery(b);
        else
            query(b);
        ble_sdloop_kick(b->loop);
    }
}

static void schedule_retry(struct ble_bluez *b)
{
    if (!b->retry)
        b->h->timer_start(b->ctx, (uint64_t)b->conf->retry_ms, 0, on_retry, b, &b->retry);
}

static void close_bus(struct ble_bluez *b)
{
    cancel_call(b);
    ble_sdloop_detach(b->loop);
    b->loop = NULL;
    if (b->bus)
        b->bus = sd_bus_close_unref(b->bus);
    free(b->owner);
    b->owner = NULL;
    b->adapter_path[0] = 0;
}

static void on_bus_error(void *arg, int err)
{
    struct ble_bluez *b = arg;
    close_bus(b);
    set_state(b, ST_DISCONNECTED, "lost the D-Bus connection: %s", strerror(-err));
    schedule_retry(b);
}

static bool from_bluez(struct ble_bluez *b, sd_bus_message *m)
{
    const char *s = sd_bus_message_get_sender(m);
    return b->owner && s && strcmp(s, b->owner) == 0;
}

static bool is_our_device(struct ble_bluez *b, const char *path, uint8_t addr[6])
{
    return b->adapter_path[0] && ble_addr_from_path(path, b->adapter_path, addr) == 0;
}

static void device_props(struct ble_bluez *b, sd_bus_message *m, const char *path, bool full)
{
    struct ble_props p = {.full = full};
    if (!is_our_device(b, path, p.addr)) {
        sd_bus_message_skip(m, "a{sv}");
        return;
    }
    if (ble_props_parse(m, &p) < 0) {
        p = (struct ble_props){.full = full, .bad = 1};
        ble_addr_from_path(path, b->adapter_path, p.addr);
    }
    b->ops.device(b->ops.arg, &p);
}

/* ---- adapter ---- */

static const char *adapter_name(const char *path)
{
    static const char prefix[] = "/org/bluez/";
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return NULL;
    const char *n = path + sizeof(prefix) - 1;
    if (!*n || strchr(n, '/') || strlen(n) >= 64)
        return NULL;
    return n;
}

static bool wanted_adapter(struct ble_bluez *b, const char *name)
{
    return b->conf->adapter ? strcmp(b->conf->adapter, name) == 0 : true;
}

static void adopt_adapter(struct ble_bluez *b, const char *name, bool powered)
{
    snprintf(b->adapter, sizeof(b->adapter), "%s", name);
    snprintf(b->adapter_path, sizeof(b->adapter_path), "/org/bluez/%s", name);
    if (!powered) {
        set_state(b, ST_POWERED_OFF, "adapter %s is powered off", b->adapter);
        return;
    }
    start_discovery(b);
}

static void no_adapter(struct ble_bluez *b, const char *why)
{
    b->adapter_path[0] = 0;
    if (b->conf->adapter)
        set_state(b, ST_NO_ADAPTER, "adapter %s %s", b->conf->adapter, why);
    else
        set_state(b, ST_NO_ADAPTER, "no Bluetooth adapter%s",
                  strcmp(why, "not found") ? " (removed)" : "");
}

static int on_discovery(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct ble_bluez *b = arg;
    const sd_bus_error *err = sd_bus_message_get_error(m);
    (void)e;

    cancel_call(b);
    if (err && !sd_bus_error_has_name(err, "org.bluez.Error.InProgress")) {
        set_state(b, ST_FAILED, "discovery on %s did not start: %s", b->adapter, err->name);
        schedule_retry(b);
        return 0;
    }
    set_state(b, ST_SCANNING, NULL);
    return 0;
}

static int on_filter(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct ble_bluez *b = arg;
    const sd_bus_error *err = sd_bus_message_get_error(m);
    int r;
    (void)e;

    cancel_call(b);
    if (err) {
        set_state(b, ST_FAILED, "SetDiscoveryFilter on %s failed: %s", b->adapter, err->name);
        schedule_retry(b);
        return 0;
    }
    r = sd_bus_call_method_async(b->bus, &b->call, BLUEZ, b->adapter_path, ADAPTER1,
                                 "StartDiscovery", on_discovery, b, "");
    if (r < 0) {
        set_state(b, ST_FAILED, "cannot call StartDiscovery: %s", strerror(-r));
        schedule_retry(b);
    }
    return 0;
}

/* SetDiscoveryFilter: LE only, every advertisement (DuplicateData; with a
 * filter set BlueZ also drops its RSSI delta threshold), RSSI floor. */
static void start_discovery(struct ble_bluez *b)
{
    sd_bus_message *m = NULL;
    int r;

    cancel_call(b);
    set_state(b, ST_STARTING, NULL);
    r = sd_bus_message_new_method_call(b->bus, &m, BLUEZ, b->adapter_path, ADAPTER1,
                                       "SetDiscoveryFilter");
    if (r >= 0)
        r = sd_bus_message_open_container(m, 'a', "{sv}");
    if (r >= 0)
        r = sd_bus_message_append(m, "{sv}", "Transport", "s", "le");
    if (r >= 0)
        r = sd_bus_message_append(m, "{sv}", "DuplicateData", "b", 1);
    if (r >= 0 && b->conf->rssi_floor)
        r = sd_bus_message_append(m, "{sv}", "RSSI", "n", (int16_t)b->conf->rssi_floor);
    if (r >= 0)
        r = sd_bus_message_close_container(m);
    if (r >= 0)
        r = sd_bus_call_async(b->bus, &b->call, m, on_filter, b, 0);
    sd_bus_message_unref(m);
    if (r < 0) {
        set_state(b, ST_FAILED, "cannot call SetDiscoveryFilter: %s", strerror(-r));
        schedule_retry(b);
    }
}

/* ---- object manager ---- */

/* First pass over a{oa{sa{sv}}}: the adapter to use (the configured one, or
 * the first by name) and whether it is powered. */
static int pick_adapter(sd_bus_message *m, struct ble_bluez *b, char name[64], bool *powered)
{
    int r = sd_bus_message_enter_container(m, 'a', "{oa{sa{sv}}}");
    if (r < 0)
        return r;
    name[0] = 0;
    while ((r = sd_bus_message_enter_container(m, 'e', "oa{sa{sv}}")) > 0) {
        const char *path, *iface, *n;
        if ((r = sd_bus_message_read_basic(m, 'o', &path)) < 0 ||
            (r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}")) < 0)
            return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
            if ((r = sd_bus_message_read_basic(m, 's', &iface)) < 0)
                return r;
            n = adapter_name(path);
            if (strcmp(iface, ADAPTER1) == 0 && n && wanted_adapter(b, n) &&
                (!name[0] || strcmp(n, name) < 0)) {
                bool pw = false;
                r = ble_props_find_bool(m, "Powered", &pw);
                snprintf(name, 64, "%s", n);
                *powered = pw;
            } else {
                r = sd_bus_message_skip(m, "a{sv}");
            }
            if (r < 0 || (r = sd_bus_message_exit_container(m)) < 0)
                return r;
        }
        if (r < 0 || (r = sd_bus_message_exit_container(m)) < 0 ||
            (r = sd_bus_message_exit_container(m)) < 0)
            return r;
    }
    if (r < 0)
        return r;
    return sd_bus_message_exit_container(m);
}

/* Second pass: the devices of the adapter. */
static int managed_devices(sd_bus_message *m, struct ble_bluez *b)
{
    int r = sd_bus_message_enter_container(m, 'a', "{oa{sa{sv}}}");
    if (r < 0)
        return r;
    while ((r = sd_bus_message_enter_container(m, 'e', "oa{sa{sv}}")) > 0) {
        const char *path, *iface;
        if ((r = sd_bus_message_read_basic(m, 'o', &path)) < 0 ||
            (r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}")) < 0)
            return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
            if ((r = sd_bus_message_read_basic(m, 's', &iface)) < 0)
                return r;
            if (strcmp(iface, DEVICE1) == 0)
                device_props(b, m, path, true);
            else if ((r = sd_bus_message_skip(m, "a{sv}")) < 0)
                return r;
            if ((r = sd_bus_message_exit_container(m)) < 0)
                return r;
        }
        if (r < 0 || (r = sd_bus_message_exit_container(m)) < 0 ||
            (r = sd_bus_message_exit_container(m)) < 0)
            return r;
    }
    if (r < 0)
        return r;
    return sd_bus_message_exit_container(m);
}

static int on_managed(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct ble_bluez *b = arg;
    const sd_bus_error *err = sd_bus_message_get_error(m);
    char name[64];
    bool powered = false;
    int r;
    (void)e;

    cancel_call(b);
    if (err) {
        set_state(b, ST_FAILED, "GetManagedObjects failed: %s", err->name);
        schedule_retry(b);
        return 0;
    }
    r = pick_adapter(m, b, name, &powered);
    if (r < 0) {
        set_state(b, ST_FAILED, "GetManagedObjects: unexpected answer: %s", strerror(-r));
        schedule_retry(b);
        return 0;
    }
    if (!name[0]) {
        no_adapter(b, "not found");
        return 0;
    }
    adopt_adapter(b, name, powered);
    if (sd_bus_message_rewind(m, true) >= 0)
        managed_devices(m, b);
    return 0;
}

static void query(struct ble_bluez *b)
{
    int r;

    cancel_call(b);
    b->adapter_path[0] = 0;
    set_state(b, ST_QUERY, NULL);
    r = sd_bus_call_method_async(b->bus, &b->call, BLUEZ, "/", OBJMGR, "GetManagedObjects",
                                 on_managed, b, "");
    if (r < 0) {
        set_state(b, ST_FAILED, "cannot call GetManagedObjects: %s", strerror(-r));
        schedule_retry(b);
    }
}

/* ---- signals ---- */

static int on_added(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct ble_bluez *b = arg;
    const char *path, *iface;
    int r;
    (void)e;

    if (!from_bluez(b, m) || sd_bus_message_read_basic(m, 'o', &path) < 0 ||
        sd_bus_message_enter_container(m, 'a', "{sa{sv}}") < 0)
        return 0;
    while ((r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
        if (sd_bus_message_read_basic(m, 's', &iface) < 0)
            return 0;
        const char *n = adapter_name(path);
        if (strcmp(iface, DEVICE1) == 0) {
            device_props(b, m, path, true);
        } else if (strcmp(iface, ADAPTER1) == 0 && n && !b->adapter_path[0] &&
                   b->state == ST_NO_ADAPTER && wanted_adapter(b, n)) {
            bool powered = false;
            if (ble_props_find_bool(m, "Powered", &powered) < 0)
                return 0;
            adopt_adapter(b, n, powered);
        } else if (sd_bus_message_skip(m, "a{sv}") < 0) {
            return 0;
        }
        if (sd_bus_message_exit_container(m) < 0)
            return 0;
    }
    return 0;
}

static int on_removed(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct ble_bluez *b = arg;
    const char *path, *iface;
    uint8_t addr[6];
    (void)e;

    if (!from_bluez(b, m) || sd_bus_message_read_basic(m, 'o', &path) < 0 ||
        sd_bus_message_enter_container(m, 'a', "s") < 0)
        return 0;
    while (sd_bus_message_read_basic(m, 's', &iface) > 0) {
        if (strcmp(iface, ADAPTER1) == 0 && b->adapter_path[0] &&
            strcmp(path, b->adapter_path) == 0) {
            cancel_call(b);
            char was[64];
            snprintf(was, sizeof(was), "%s", b->adapter);
            b->adapter_path[0] = 0;
            if (b->conf->adapter) {
                no_adapter(b, "was removed");
            } else {
                set_state(b, ST_NO_ADAPTER, "adapter %s was removed", was);
                query(b); /* another adapter may do */
            }
            return 0;
        }
        if (strcmp(iface, DEVICE1) == 0 && is_our_device(b, path, addr) && b->ops.removed)
            b->ops.removed(b->ops.arg, addr);
    }
    return 0;
}

static void adapter_changed(struct ble_bluez *b, sd_bus_message *m)
{
    bool powered = false, discovering = true;
    int rp, rd;

    /* two looks at one a{sv}: Powered, then Discovering */
    rp = ble_props_find_bool(m, "Powered", &powered);
    if (rp < 0 || sd_bus_message_rewind(m, true) < 0)
        return;
    const char *iface;
    if (sd_bus_message_read_basic(m, 's', &iface) < 0)
        return;
    rd = ble_props_find_bool(m, "Discovering", &discovering);
    if (rp > 0 && !powered) {
        cancel_call(b);
        set_state(b, ST_POWERED_OFF, "adapter %s is powered off", b->adapter);
        return;
    }
    if (rp > 0 && powered && (b->state == ST_POWERED_OFF || b->state == ST_FAILED)) {
        start_discovery(b);
        return;
    }
    if (rd > 0 && !discovering && b->state == ST_SCANNING) {
        b->stats.discovery_restarts++; /* another client or BlueZ stopped it: ours was not */
        start_discovery(b);
    }
}

static int on_changed(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct ble_bluez *b = arg;
    const char *iface, *path = sd_bus_message_get_path(m);
    (void)e;

    if (!from_bluez(b, m) || !path || sd_bus_message_read_basic(m, 's', &iface) < 0)
        return 0;
    if (strcmp(iface, DEVICE1) == 0)
        device_props(b, m, path, false);
    else if (strcmp(iface, ADAPTER1) == 0 && b->adapter_path[0] &&
             strcmp(path, b->adapter_path) == 0)
        adapter_changed(b, m);
    return 0;
}

static void owner_is(struct ble_bluez *b, const char *owner)
{
    free(b->owner);
    b->owner = NULL;
    cancel_call(b);
    b->adapter_path[0] = 0;
    if (!owner || !*owner) {
        set_state(b, ST_NO_OWNER, "bluetoothd is not running (no owner of org.bluez)");
        return;
    }
    b->owner = strdup(owner);
    if (!b->owner) {
        set_state(b, ST_FAILED, "out of memory");
        schedule_retry(b);
        return;
    }
    query(b);
}

static int on_owner_changed(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct ble_bluez *b = arg;
    const char *name, *old, *new;
    (void)e;

    if (sd_bus_message_read(m, "sss", &name, &old, &new) < 0 || strcmp(name, BLUEZ) != 0)
        return 0;
    owner_is(b, new);
    return 0;
}

static int on_get_owner(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct ble_bluez *b = arg;
    const char *owner = NULL;
    (void)e;

    cancel_call(b);
    if (!sd_bus_message_is_method_error(m, NULL))
        sd_bus_message_read(m, "s", &owner);
    owner_is(b, owner);
    return 0;
}

/* ---- connection ---- */

static int add_matches(struct ble_bluez *b)
{
    int r = sd_bus_match_signal_async(b->bus, NULL, NULL, "/", OBJMGR, "InterfacesAdded", on_added,
                                      NULL, b);
    if (r >= 0)
        r = sd_bus_match_signal_async(b->bus, NULL, NULL, "/", OBJMGR, "InterfacesRemoved",
                                      on_removed, NULL, b);
    if (r >= 0)
        r = sd_bus_add_match_async(b->bus, NULL,
                                   "type='signal',interface='" PROPS "',member='PropertiesChanged',"
                                   "path_namespace='/org/bluez'",
                                   on_changed, NULL, b);
    if (r >= 0)
        r = sd_bus_add_match_async(b->bus, NULL,
                                   "type='signal',sender='org.freedesktop.DBus',"
                                   "path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',"
                                   "member='NameOwnerChanged',arg0='" BLUEZ "'",
                                   on_owner_changed, NULL, b);
    return r;
}

static void connect_bus(struct ble_bluez *b)
{
    const char *addr = b->conf->bus_address;
    int r;

    if (!addr)
        addr = getenv("DBUS_SYSTEM_BUS_ADDRESS");
    if (!addr || !*addr)
        addr = SYSTEM_BUS;
    r = sd_bus_new(&b->bus);
    if (r >= 0)
        r = sd_bus_set_address(b->bus, addr);
    if (r >= 0)
        r = sd_bus_set_bus_client(b->bus, 1);
    if (r >= 0)
        r = sd_bus_start(b->bus);
    if (r >= 0)
        r = ble_sdloop_attach(&b->loop, b->h, b->ctx, b->bus, on_bus_error, b);
    if (r >= 0)
        r = add_matches(b);
    /* matches first: an owner change after the answer is a signal */
    if (r >= 0)
        r = sd_bus_call_method_async(b->bus, &b->call, "org.freedesktop.DBus",
                                     "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                     "GetNameOwner", on_get_owner, b, "s", BLUEZ);
    if (r < 0) {
        close_bus(b);
        set_state(b, ST_DISCONNECTED, "cannot connect to D-Bus at %s: %s", addr, strerror(-r));
        schedule_retry(b);
        return;
    }
    if (b->connected_once)
        b->stats.reconnects++;
    b->connected_once = true;
    b->state = ST_QUERY;
    ble_sdloop_kick(b->loop);
}

/* ---- fetch ---- */

struct fetch {
    struct ble_bluez *b;
    uint8_t addr[6];
};

static int on_fetched(sd_bus_message *m, void *arg, sd_bus_error *e)
{
    struct fetch *f = arg;
    struct ble_props p = {.full = true, .fetched = true};
    (void)e;

    memcpy(p.addr, f->addr, 6);
    if (!sd_bus_message_is_method_error(m, NULL) && ble_props_parse(m, &p) < 0) {
        p = (struct ble_props){.full = true, .fetched = true, .bad = 1};
        memcpy(p.addr, f->addr, 6);
    }
    f->b->ops.device(f->b->ops.arg, &p); /* an error (the device is gone) comes empty */
    return 0;
}

int ble_bluez_fetch(struct ble_bluez *b, const uint8_t addr[6])
{
    char path[128];
    sd_bus_slot *slot = NULL;
    struct fetch *f;
    int r;

    if (!b->bus || !b->owner || !b->adapter_path[0])
        return -ENOTCONN;
    f = malloc(sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->b = b;
    memcpy(f->addr, addr, 6);
    snprintf(path, sizeof(path), "%s/dev_%02X_%02X_%02X_%02X_%02X_%02X", b->adapter_path, addr[0],
             addr[1], addr[2], addr[3], addr[4], addr[5]);
    r = sd_bus_call_method_async(b->bus, &slot, BLUEZ, path, PROPS, "GetAll", on_fetched, f, "s",
                                 DEVICE1);
    explicit_bzero(path, sizeof(path));
    if (r < 0) {
        free(f);
        return r;
    }
    /* the bus owns the call from here; f goes with it (answered or closed) */
    sd_bus_slot_set_destroy_callback(slot, free);
    sd_bus_slot_set_floating(slot, 1);
    sd_bus_slot_unref(slot);
    ble_sdloop_kick(b->loop);
    return 0;
}

/* ---- lifecycle ---- */

int ble_bluez_create(struct ble_bluez **out, const struct mittari_host *host,
                     struct mittari_ctx *ctx, const struct ble_bluez_conf *conf,
                     const struct ble_bluez_ops *ops)
{
    struct ble_bluez *b = calloc(1, sizeof(*b));
    *out = NULL;
    if (!b)
        return -ENOMEM;
    *b = (struct ble_bluez){.h = host, .ctx = ctx, .conf = conf, .ops = *ops};
    *out = b;
    return 0;
}

void ble_bluez_start(struct ble_bluez *b)
{
    b->state = ST_DISCONNECTED;
    connect_bus(b);
}

void ble_bluez_stop(struct ble_bluez *b)
{
    if (b->retry)
        b->h->timer_stop(b->retry);
    b->retry = NULL;
    close_bus(b);
    b->state = ST_IDLE;
}

void ble_bluez_destroy(struct ble_bluez *b)
{
    if (!b)
        return;
    close_bus(b);
    free(b);
}

void ble_bluez_stats(const struct ble_bluez *b, struct ble_bluez_stats *st)
{
    *st = b->stats;
}
