/*
 * props: Device1 property sets out of D-Bus messages (props.h).
 */
#include "props.h"

#include <errno.h>
#include <string.h>

#include "adv.h"

/* Enters a variant holding exactly `contents`: 1, 0 if it holds something
 * else (left unread), or a negative errno. */
static int enter_variant(sd_bus_message *m, const char *contents)
{
    char type;
    const char *c;
    int r = sd_bus_message_peek_type(m, &type, &c);
    if (r <= 0)
        return r < 0 ? r : -EBADMSG;
    if (type != SD_BUS_TYPE_VARIANT || !c || strcmp(c, contents) != 0)
        return 0;
    r = sd_bus_message_enter_container(m, SD_BUS_TYPE_VARIANT, contents);
    return r < 0 ? r : 1;
}

static int skip_bad(sd_bus_message *m, struct ble_props *p)
{
    p->bad++;
    return sd_bus_message_skip(m, "v");
}

static int read_scalar(sd_bus_message *m, const char *sig, void *out)
{
    int r = enter_variant(m, sig);
    if (r <= 0)
        return r;
    r = sd_bus_message_read_basic(m, sig[0], out);
    if (r >= 0)
        r = sd_bus_message_exit_container(m);
    return r < 0 ? r : 1;
}

/* ManufacturerData a{qv} (v holding ay) or ServiceData a{sv} */
static int read_data(sd_bus_message *m, struct ble_props *p, bool service)
{
    const char *sig = service ? "a{sv}" : "a{qv}";
    int r = enter_variant(m, sig);
    if (r <= 0)
        return r == 0 ? skip_bad(m, p) : r;
    r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, service ? "{sv}" : "{qv}");
    if (r < 0)
        return r;
    while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, service ? "sv" : "qv")) >
           0) {
        uint16_t company = 0;
        const char *uuid = NULL;
        const void *d = NULL;
        size_t n = 0;
        r = service ? sd_bus_message_read_basic(m, 's', &uuid)
                    : sd_bus_message_read_basic(m, 'q', &company);
        if (r < 0)
            return r;
        r = enter_variant(m, "ay");
        if (r < 0)
            return r;
        if (r == 0) {
            r = skip_bad(m, p);
        } else {
            r = sd_bus_message_read_array(m, 'y', &d, &n);
            if (r >= 0)
                r = sd_bus_message_exit_container(m);
            if (r >= 0 && service && p->nsvc < BLE_PROPS_MAX) {
                if (ble_uuid_parse(uuid, strlen(uuid), p->svc[p->nsvc].uuid) == 0) {
                    p->svc[p->nsvc].d = d;
                    p->svc[p->nsvc++].n = n;
                } else {
                    p->bad++;
                }
            } else if (r >= 0 && !service && p->nmfr < BLE_PROPS_MAX) {
                p->mfr[p->nmfr].company = company;
                p->mfr[p->nmfr].d = d;
                p->mfr[p->nmfr++].n = n;
            }
        }
        if (r < 0)
            return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
            return r;
    }
    if (r < 0)
        return r;
    r = sd_bus_message_exit_container(m);
    if (r >= 0)
        r = sd_bus_message_exit_container(m);
    return r;
}

/* A Device1 a{sv} into p. Unknown properties are skipped; known ones of
 * another type are skipped and counted (python-dbusmock, for one, starts
 * devices with ManufacturerData of type aa{qv}). */
int ble_props_parse(sd_bus_message *m, struct ble_props *p)
{
    int r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
    if (r < 0)
        return r;
    while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv")) > 0) {
        const char *name;
        r = sd_bus_message_read_basic(m, 's', &name);
        if (r < 0)
            return r;
        if (strcmp(name, "RSSI") == 0) {
            r = read_scalar(m, "n", &p->rssi);
            p->has_rssi = r > 0;
        } else if (strcmp(name, "TxPower") == 0) {
            r = read_scalar(m, "n", &p->txpower);
            p->has_txpower = r > 0;
        } else if (strcmp(name, "AddressType") == 0) {
            const char *t = NULL;
            r = read_scalar(m, "s", &t);
            if (r > 0 && (strcmp(t, "public") == 0 || strcmp(t, "random") == 0)) {
                p->has_type = true;
                p->random = t[0] == 'r';
            } else if (r > 0) {
                p->bad++;
            }
        } else if (strcmp(name, "ManufacturerData") == 0 || strcmp(name, "ServiceData") == 0) {
            r = read_data(m, p, name[0] == 'S');
            if (r >= 0)
                r = 1;
        } else {
            r = sd_bus_message_skip(m, "v");
            if (r >= 0)
                r = 1;
        }
        if (r == 0)
            r = skip_bad(m, p);
        if (r < 0)
            return r;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
            return r;
    }
    if (r < 0)
        return r;
    r = sd_bus_message_exit_container(m);
    return r < 0 ? r : 0;
}

/* A bool property in an a{sv} at the read position: 1 found (in *v), 0 not. */
int ble_props_find_bool(sd_bus_message *m, const char *want, bool *v)
{
    int found = 0, r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, "{sv}");
    if (r < 0)
        return r;
    while ((r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, "sv")) > 0) {
        const char *name;
        int x = 0;
        r = sd_bus_message_read_basic(m, 's', &name);
        if (r < 0)
            return r;
        if (strcmp(name, want) == 0 && (r = read_scalar(m, "b", &x)) > 0) {
            *v = x != 0;
            found = 1;
        } else {
            r = r < 0 ? r : sd_bus_message_skip(m, "v");
        }
        if (r < 0 || (r = sd_bus_message_exit_container(m)) < 0)
            return r;
    }
    if (r < 0)
        return r;
    r = sd_bus_message_exit_container(m);
    return r < 0 ? r : found;
}
