/* Fuzz the ble plugin's reading of Device1 property sets with the real
 * function (props.c) on real sd-bus messages: the input is a script that
 * builds the a{sv} (a property name from the ones the plugin knows and a
 * few it does not, then a value of a type picked from right and wrong ones,
 * with bytes from the input), so every property can arrive with any type
 * and any content, as a buggy or hostile bluetoothd could send it. Never a
 * crash, a leak or undefined behaviour; what is taken stays within bounds
 * and points into the message. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adv.h"
#include "props.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static sd_bus *bus;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int fds[2];
    (void)argc;
    (void)argv;
    /* sd-bus builds messages only on an open bus: a socketpair never read */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    /* fds[1] stays open: sd_bus_start writes its greeting to it */
    CHECK(sd_bus_new(&bus) >= 0 && sd_bus_set_fd(bus, fds[0], fds[0]) >= 0 &&
          sd_bus_start(bus) >= 0);
    return 0;
}

struct in {
    const uint8_t *p;
    size_t n;
};

static uint8_t take(struct in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

/* up to 40 bytes of the input as an ay */
static int bytes(sd_bus_message *m, struct in *in)
{
    size_t n = take(in) % 41;
    if (n > in->n)
        n = in->n;
    int r = sd_bus_message_append_array(m, 'y', in->p, n);
    in->p += n;
    in->n -= n;
    return r;
}

static int dict_of_ay(sd_bus_message *m, struct in *in, bool service)
{
    static const char *const uuids[] = {"0000feaa-0000-1000-8000-00805f9b34fb",
                                        "0000FEAA-0000-1000-8000-00805F9B34FB",
                                        "0000180f-0000-1000-8000-00805f9b34fb", "feaa", ""};
    int r = sd_bus_message_open_container(m, 'a', service ? "{sv}" : "{qv}");
    for (int k = take(in) % 12; r >= 0 && k > 0; k--) {
        uint8_t sel = take(in);
        r = sd_bus_message_open_container(m, 'e', service ? "sv" : "qv");
        if (r >= 0 && service)
            r = sd_bus_message_append_basic(m, 's', uuids[sel % 5]);
        if (r >= 0 && !service) {
            uint16_t company = (sel & 1) ? 0x004C : (uint16_t)(sel << 8 | take(in));
            r = sd_bus_message_append_basic(m, 'q', &company);
        }
        if (r >= 0 && sel & 0x80) {
            r = sd_bus_message_append(m, "v", "s", "not bytes");
        } else if (r >= 0) {
            r = sd_bus_message_open_container(m, 'v', "ay");
            if (r >= 0)
                r = bytes(m, in);
            if (r >= 0)
                r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
            r = sd_bus_message_close_container(m);
    }
    if (r >= 0)
        r = sd_bus_message_close_container(m);
    return r;
}

static int value(sd_bus_message *m, struct in *in)
{
    uint8_t hi = take(in), lo = take(in);
    int16_t n = (int16_t)(hi << 8 | lo);
    switch (take(in) % 10) {
    case 0:
        return sd_bus_message_append(m, "v", "n", n);
    case 1:
        return sd_bus_message_append(m, "v", "i", (int32_t)n);
    case 2:
        return sd_bus_message_append(m, "v", "s", (n & 1) ? "random" : "public");
    case 3:
        return sd_bus_message_append(m, "v", "b", n & 1);
    case 4:
        return sd_bus_message_append(m, "v", "aa{qv}", 0);
    case 5:
        return sd_bus_message_append(m, "v", "as", 1, "x");
    default: {
        bool service = n & 1;
        int r = sd_bus_message_open_container(m, 'v', service ? "a{sv}" : "a{qv}");
        if (r >= 0)
            r = dict_of_ay(m, in, service);
        if (r >= 0)
            r = sd_bus_message_close_container(m);
        return r;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"RSSI",        "TxPower", "AddressType", "ManufacturerData",
                                        "ServiceData", "Name",    "Powered",     "Discovering"};
    struct in in = {data, size};
    sd_bus_message *m = NULL;
    struct ble_props p;
    bool v;
    int r;

    CHECK(sd_bus_message_new_signal(bus, &m, "/org/bluez/hci0/dev_5A_00_00_00_00_01",
                                    "org.freedesktop.DBus.Properties", "PropertiesChanged") >= 0);
    r = sd_bus_message_open_container(m, 'a', "{sv}");
    for (int k = 0; r >= 0 && k < 16 && in.n; k++) {
        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
            r = sd_bus_message_append_basic(m, 's', names[take(&in) % 8]);
        if (r >= 0)
            r = value(m, &in);
        if (r >= 0)
            r = sd_bus_message_close_container(m);
    }
    if (r >= 0)
        r = sd_bus_message_close_container(m);
    if (r >= 0)
        r = sd_bus_message_seal(m, 1, 0);
    if (r >= 0 && sd_bus_message_rewind(m, true) >= 0) {
        memset(&p, 0, sizeof(p));
        if (ble_props_parse(m, &p) == 0) {
            CHECK(p.nmfr <= BLE_PROPS_MAX && p.nsvc <= BLE_PROPS_MAX);
            for (size_t i = 0; i < p.nmfr; i++)
                CHECK(p.mfr[i].n <= 40 && (p.mfr[i].n == 0 || p.mfr[i].d));
            for (size_t i = 0; i < p.nsvc; i++) {
                CHECK(p.svc[i].n <= 40);
                struct ble_frame f;
                ble_adv_service(p.svc[i].uuid, p.svc[i].d, p.svc[i].n, &f);
            }
            for (size_t i = 0; i < p.nmfr; i++) {
                struct ble_frame f;
                ble_adv_manufacturer(p.mfr[i].company, p.mfr[i].d, p.mfr[i].n, &f);
            }
        }
        if (sd_bus_message_rewind(m, true) >= 0)
            ble_props_find_bool(m, "Powered", &v);
    }
    sd_bus_message_unref(m);
    return 0;
}
